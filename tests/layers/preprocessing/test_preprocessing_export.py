"""The parity table of the preprocessing converters: one row per argument combination
that changes the graph, at opset 13 and the newest, batch sizes 0, 1, 7 and 64; then the
unknown image sizes that must be refused and the graphs that must stay small."""

import numpy as np
import pytest
from onnx_checks import assert_graph_quality, assert_matches_reference, inferred_output_shapes

from layerserve.errors import NotSupportedError
from layerserve.export import to_onnx
from layerserve.layers import (
    CenterCrop,
    Dense,
    Input,
    Masking,
    Normalization,
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
    Rescaling,
    Resizing,
)
from layerserve.models import Model
from layerserve.serialization import keras_semantics

KERAS3, TF_KERAS = "3.15.1", "2.21.0"
CF = "channels_first"


def seq(make, shape, dtype="float32", version=TF_KERAS, then=None):
    """``make()`` (a layer or a list) on an input; ``then`` follows when the layers alone
    would be the identity (a graph output cannot be its input)."""
    with keras_semantics(version):
        x = Input(shape, dtype=dtype)
        y = x
        made = make()
        for layer in made if isinstance(made, list) else [made]:
            y = layer(y)
        if then is not None:
            y = then()(y)
        return Model(x, y)


def augmentations():
    return [
        RandomFlip(),
        RandomRotation(0.1),
        RandomZoom(0.2),
        RandomTranslation(0.1, 0.1),
        RandomContrast(0.2),
        RandomBrightness(0.1),
    ]


MODELS = {
    # Rescaling: Mul and Add after the cast; ones and zeros skipped.
    "rescaling-uint8": lambda: seq(lambda: Rescaling(1 / 255.0, -0.5), (4, 5, 3), "uint8"),
    "rescaling-per-channel": lambda: seq(lambda: Rescaling([1.0, 2.0, 3.0], [0, 1, 0]), (2, 3)),
    "rescaling-offset-only": lambda: seq(lambda: Rescaling(1.0, offset=2.0), (3,), "int32"),
    "rescaling-scale-only-keras3-mask": lambda: seq(
        lambda: [Masking(), Rescaling(3.0)], (4, 2), version=KERAS3
    ),
    # Normalization: Sub/Div (or Mul/Add) with the deviation computed at export.
    "normalization-config": lambda: seq(
        lambda: Normalization(mean=[1.0, 2.0], variance=[4.0, 0.0]), (3, 2)
    ),
    "normalization-adapted-axes": lambda: seq(lambda: Normalization(axis=(1, 2)), (3, 2)),
    "normalization-none-invert-int": lambda: seq(
        lambda: Normalization(axis=None, mean=1.0, variance=2.0, invert=True), (3,), "int64"
    ),
    # CenterCrop: Slice; or Slice + Resize when the image is smaller than the target.
    "center-crop": lambda: seq(lambda: CenterCrop(3, 2), (6, 5, 2)),
    "center-crop-upsize": lambda: seq(lambda: CenterCrop(7, 4), (5, 6, 2)),
    "center-crop-upsize-cf": lambda: seq(
        lambda: CenterCrop(3, 7, data_format=CF), (2, 5, 6), version=KERAS3
    ),
    "center-crop-same-size-uint8": lambda: seq(
        lambda: CenterCrop(5, 6), (5, 6, 1), "uint8", then=lambda: Dense(2)
    ),
    # Resizing bilinear: Resize (sizes from Shape below opset 18), any input size.
    "resizing-bilinear": lambda: seq(lambda: Resizing(7, 3), (5, 6, 2)),
    "resizing-bilinear-unknown-size": lambda: seq(lambda: Resizing(7, 3), (None, None, 2)),
    "resizing-bilinear-unknown-channels-cf": lambda: seq(
        lambda: Resizing(4, 9, data_format=CF), (None, 5, 6), version=KERAS3
    ),
    "resizing-bilinear-uint8-tf-keras": lambda: seq(lambda: Resizing(3, 8), (4, 5, 1), "uint8"),
    "resizing-crop-to-aspect-ratio": lambda: seq(
        lambda: Resizing(4, 6, crop_to_aspect_ratio=True), (7, 5, 2)
    ),
    "resizing-pad-to-aspect-ratio": lambda: seq(
        lambda: Resizing(4, 6, pad_to_aspect_ratio=True, fill_value=0.5), (7, 5, 2), version=KERAS3
    ),
    "resizing-antialias-upscale-cf": lambda: seq(
        lambda: Resizing(8, 9, antialias=True, data_format=CF), (2, 5, 6), version=KERAS3
    ),
    # Resizing nearest: a Gather per changed axis.
    "resizing-nearest-tf-keras-14-23": lambda: seq(
        lambda: Resizing(23, 5, interpolation="nearest"), (14, 5, 2)
    ),
    "resizing-nearest-uint8-keras3": lambda: seq(
        lambda: Resizing(6, 3, interpolation="nearest"), (4, 5, 1), "uint8", version=KERAS3
    ),
    "resizing-nearest-pad-cf": lambda: seq(
        lambda: Resizing(5, 9, "nearest", pad_to_aspect_ratio=True, data_format=CF),
        (2, 6, 3),
        version=KERAS3,
    ),
    # Augmentation: nothing, or a Cast; tf.keras's RandomCrop resizes.
    "augmentations-uint8-tf-keras": lambda: seq(augmentations, (5, 4, 3), "uint8"),
    "augmentations-keras3": lambda: seq(
        augmentations, (5, 4, 3), version=KERAS3, then=lambda: Dense(2)
    ),
    "augmentations-keras3-keep-uint8": lambda: seq(
        lambda: [RandomContrast(0.2), RandomBrightness(0.1), RandomCrop(2, 2)],
        (5, 4, 3),
        "uint8",
        version=KERAS3,
        then=lambda: Rescaling(2.0),
    ),
    "random-crop-tf-keras": lambda: seq(lambda: RandomCrop(3, 2), (5, 6, 2)),
}


@pytest.mark.parametrize("build", MODELS.values(), ids=MODELS.keys())
def test_export_matches_reference(build, opset):
    model = build()
    onnx_model = to_onnx(model, opset=opset)
    assert_graph_quality(onnx_model)
    batch, *dims = inferred_output_shapes(onnx_model)[model.output_names[0]]
    assert batch == "batch"
    assert [d if isinstance(d, int) else None for d in dims] == list(model.output_shape[1:])
    assert_matches_reference(model, onnx_model)


def ops(model, opset=None):
    return [n.op_type for n in to_onnx(model, opset=opset).graph.node]


def test_small_graphs():
    assert ops(seq(lambda: Rescaling(1.0, [0.0, 0.0]), (3, 2), then=lambda: Dense(1))) == [
        "Reshape",
        "Gemm",
        "Reshape",
    ]
    assert ops(seq(lambda: CenterCrop(3, 2), (6, 5, 2))) == ["Slice"]
    assert ops(seq(lambda: Resizing(7, 3), (5, 6, 2))) == ["Resize"]
    assert ops(seq(lambda: Resizing(7, 3), (5, 6, 2)), opset=13) == [
        "Shape",
        "Mul",
        "Add",
        "Resize",
    ]
    assert ops(seq(lambda: Resizing(5, 3, "nearest"), (5, 6, 2))) == ["Gather"]  # rows unchanged
    assert ops(seq(augmentations, (5, 4, 3), "uint8")) == ["Cast"]


@pytest.mark.parametrize(
    ("build", "shape", "what"),
    [
        (lambda: seq(lambda: CenterCrop(3, 2), (None, 5, 2)), (1, 4, 5, 2), "crops or resizes"),
        (lambda: seq(lambda: Resizing(3, 2, "nearest"), (4, None, 2)), (1, 4, 3, 2), "the resize"),
        (
            lambda: seq(lambda: Resizing(3, 2, crop_to_aspect_ratio=True), (None, None, 1)),
            (2, 5, 7, 1),
            "the resize",
        ),
        (lambda: seq(lambda: RandomCrop(3, 2), (None, 5, 2)), (1, 2, 5, 2), "inference resize"),
    ],
)
def test_unknown_image_sizes_are_refused_at_export(build, shape, what):
    model = build()
    assert model.predict(np.ones(shape, "float32")).shape == (shape[0], 3, 2, shape[3])
    with pytest.raises(NotSupportedError, match=f"height and width are unknown.*{what}"):
        to_onnx(model)
