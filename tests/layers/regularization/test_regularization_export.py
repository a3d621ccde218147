"""The parity table of the noise layers: no node (the identity at inference), masks
passed on; at opset 13 and the newest, batch sizes 0, 1, 7 and 64."""

import pytest
from onnx_checks import assert_graph_quality, assert_matches_reference, inferred_output_shapes

from layerserve.export import to_onnx
from layerserve.layers import (
    LSTM,
    AlphaDropout,
    Dense,
    GaussianDropout,
    GaussianNoise,
    Input,
    Masking,
)
from layerserve.models import Model, Sequential
from layerserve.serialization import keras_semantics


def masked_chain(version):
    with keras_semantics(version):
        x = Input((5, 3))
        y = GaussianNoise(0.4, seed=1)(Masking()(x))
        y = AlphaDropout(0.2, noise_shape=(None, 1, 3))(GaussianDropout(0.3)(y))
        return Model(x, LSTM(2, return_sequences=True)(y))


MODELS = {
    "masked-chain-keras2": lambda: masked_chain("2.2.4"),
    "masked-chain-tf-keras": lambda: masked_chain("2.21.0"),
    "masked-chain-keras3": lambda: masked_chain("3.15.1"),
    "stddev-above-one-keras2": lambda: Sequential([GaussianNoise(3.0, input_shape=(4,)), Dense(2)]),
    "rate-one-keras3": lambda: _keras3(
        lambda: Sequential([GaussianDropout(1.0, input_shape=(4,)), AlphaDropout(1.0), Dense(2)])
    ),
}


def _keras3(build):
    with keras_semantics("3.15.1"):
        return build()


@pytest.mark.parametrize("build", MODELS.values(), ids=MODELS.keys())
def test_export_matches_reference(build, opset):
    model = build()
    onnx_model = to_onnx(model, opset=opset)
    assert_graph_quality(onnx_model)
    shapes = inferred_output_shapes(onnx_model)
    assert shapes[model.output_names[0]] == ["batch", *model.output_shape[1:]]
    assert_matches_reference(model, onnx_model)


def test_noise_layers_add_no_nodes():
    plain = Sequential([Dense(2, input_shape=(4,))])
    noisy = Sequential(
        [GaussianNoise(0.1, input_shape=(4,)), GaussianDropout(0.1), AlphaDropout(0.1), Dense(2)]
    )
    ops = [n.op_type for n in to_onnx(noisy).graph.node]
    assert ops == [n.op_type for n in to_onnx(plain).graph.node] == ["Gemm"]
