"""Files multi-backend Keras 2.2.4 wrote itself, on TensorFlow 1.15 and on Theano 1.0.5
(``keras22/write_fixtures.py``, with the command that writes them): recurrent wrappers
over masked sequences, convolutions and pooling, the core layers and the other families.
Each loads with the outputs and masks Keras computed, in the NumPy reference and in
onnxruntime; a Theano file whose numbers Keras itself computes otherwise on TensorFlow is
refused before any weight is set (``layerserve/saving/theano_files.py``)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from keras_oracle import assert_export_matches, assert_reference_matches

from layerserve.errors import NotSupportedError
from layerserve.models import load_model, model_from_json

FILES = Path(__file__).with_name("keras22")
BACKENDS = ("tensorflow", "theano")
ATOL = 2e-5
RECURRENT = (
    "bidirectional-lstm-sequences-concat",
    "bidirectional-lstm-last-sum",
    "bidirectional-gru-sequences-ave",
    "bidirectional-gru-last-mul",
    "bidirectional-simplernn-sequences-concat",
    "bidirectional-go-backwards-sequences",
    "bidirectional-stacked-sequences",
    "bidirectional-lstm-states-no-merge",
    "bidirectional-lstm-initial-state-masked",
    "bidirectional-lstm-initial-state-unmasked",
    "timedistributed-dense-masked-lstm",
    "timedistributed-dense",
)
WINDOWS = (
    "conv1d-valid-strided",
    "conv1d-causal",
    "conv2d-valid",
    "conv2d-same-odd",
    "conv2d-same-dilated",
    "conv2d-channels-first",
    "conv3d-valid",
    "conv2dtranspose-valid-strided",
    "conv2dtranspose-same-odd",
    "separableconv2d-valid",
    "depthwiseconv2d-valid",
    "maxpooling2d-valid",
    "timedistributed-conv2d",
    "nested-model-conv2d",
    "conv2d-same-even",
    "maxpooling2d-same-strided",
)
LAYERS = (
    *(
        f"dense-{name}"
        for name in (
            "relu",
            "elu",
            "selu",
            "softplus",
            "softsign",
            "tanh",
            "sigmoid",
            "hard_sigmoid",
            "exponential",
            "linear",
            "softmax",
        )
    ),
    "activation-softmax-3d",
    "dense-3d-no-bias",
    "core-reshaping-dropout",
    "embedding-mask-zero-gru",
    "lstm-unroll",
    "lstm-implementation-2-backwards",
    "gru-reset-after",
    "gru-relu-sigmoid",
    "lstm-return-state",
    "masking-lstm-unroll-leading",
    "masked-merge-add-lstm",
    "batchnormalization",
    "batchnormalization-axis-1-no-scale-no-center",
    "conv2d-batchnormalization-pooling",
    "conv1d-causal-dilated-globalmaxpooling",
    "separableconv2d-depth-multiplier",
    "conv2dtranspose-output-padding",
    "conv3dtranspose",
    "padding-cropping-upsampling-2d",
    "padding-cropping-upsampling-3d",
    "upsampling2d-bilinear",
    "advanced-activations",
    "prelu-shared-axes",
    "noise-layers",
    "merging",
    "dot-3d",
    "nested-fine-tuning",
    "nested-frozen-model",
)
# What Keras computes otherwise on each backend: layerserve refuses the Theano file.
REFUSED_ON_THEANO = {
    "bidirectional-lstm-initial-state-masked": "given initial states and a mask",
    "conv2d-same-even": "Received: size=(2, 3), strides=(1, 1)",
    "maxpooling2d-same-strided": "Received: size=(3, 3), strides=(2, 2)",
}
# Written as JSON and a weights-only file as well (write_fixtures.SPLIT).
SPLIT = ("conv2d-valid", "conv1d-valid-strided")


def expected(path: Path) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray | None]]:
    """Inputs, outputs and output masks (None where an output has none), as the Keras
    that wrote the file computed them."""
    data = np.load(path.with_suffix(".npz"))

    def series(prefix: str) -> list[np.ndarray]:
        return [data[f"{prefix}{i}"] for i in range(len(data.files)) if f"{prefix}{i}" in data]

    outputs = series("y")
    masks = [data[f"m{i}"] if f"m{i}" in data else None for i in range(len(outputs))]
    return series("x"), outputs, masks


def cases() -> list[tuple[str, str]]:
    return [(backend, name) for backend in BACKENDS for name in (*RECURRENT, *WINDOWS, *LAYERS)]


@pytest.mark.parametrize(("backend", "name"), cases(), ids=lambda v: v)
def test_a_keras_22_file_gives_the_numbers_keras_gave(backend, name):
    path = FILES / backend / f"{name}.h5"
    with h5py.File(path, "r") as handle:  # the file says who wrote it
        assert (handle.attrs["keras_version"], handle.attrs["backend"]) == ("2.2.4", backend)
    if backend == "theano" and name in REFUSED_ON_THEANO:
        with pytest.raises(NotSupportedError, match="Theano") as refused:
            load_model(path)
        assert REFUSED_ON_THEANO[name] in str(refused.value)
        return
    model = load_model(path)
    inputs, outputs, masks = expected(path)
    for rows in (len(inputs[0]), 1):
        assert_reference_matches(model, inputs, outputs, masks, rows, ATOL)
    assert_export_matches(model, inputs, outputs, masks, ATOL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", SPLIT)
def test_json_and_weights_files_read_the_backend_of_the_weights(backend, name):
    """A weights-only file records its backend at its root: Theano kernels are flipped
    there too."""
    path = FILES / backend / f"{name}.h5"
    model = model_from_json(path.with_suffix(".json").read_text())
    model.load_weights(FILES / backend / f"{name}.weights.h5")
    inputs, outputs, masks = expected(path)
    assert_reference_matches(model, inputs, outputs, masks, len(inputs[0]), ATOL)


def test_a_refused_theano_file_leaves_the_model_it_was_loaded_into_unchanged():
    """``load_weights`` of a Theano file that is refused sets no weight."""
    path = FILES / "tensorflow" / "conv2d-same-even.h5"
    model = load_model(path)  # the TensorFlow file: same layers, accepted
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(NotSupportedError, match="Theano"):
        model.load_weights(FILES / "theano" / "conv2d-same-even.h5")
    for got, want in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)


# Where the releases differ in masked steps: Keras 2.2.5, 2.3.1 and TensorFlow 1.15's
# tf.keras ("2.2.4-tf") output zeros at the masked steps before the first valid one, given
# initial states, where Keras 2.2.4 outputs the initial state (the same cases in
# "tensorflow" above); tf.keras zeroes Bidirectional's masked steps, multi-backend Keras
# 2.2 and 2.3 repeat the previous output there.
OTHER_RELEASES = (
    ("tensorflow-2.2.5", "bidirectional-lstm-sequences-concat", "2.2.5"),
    ("tensorflow-2.2.5", "bidirectional-lstm-initial-state-masked", "2.2.5"),
    ("tensorflow-2.3.1", "bidirectional-lstm-sequences-concat", "2.3.1"),
    ("tensorflow-2.3.1", "bidirectional-lstm-initial-state-masked", "2.3.1"),
    ("tf-keras-1.15", "lstm-initial-state-masked", "2.2.4-tf"),
    ("tf-keras-1.15", "bidirectional-lstm-initial-state-masked", "2.2.4-tf"),
    ("tf-keras-1.15", "bidirectional-lstm-sequences-masked", "2.2.4-tf"),
)


@pytest.mark.parametrize(("folder", "name", "version"), OTHER_RELEASES, ids=lambda v: v)
def test_each_release_gives_its_own_numbers_and_keeps_them_when_saved(
    tmp_path, folder, name, version
):
    path = FILES / folder / f"{name}.h5"
    with h5py.File(path, "r") as handle:
        assert handle.attrs["keras_version"] == version
    model = load_model(path)
    inputs, outputs, _ = expected(path)
    predicted = model.predict(inputs)
    np.testing.assert_allclose(predicted, outputs[0], rtol=1e-5, atol=ATOL)
    masked = np.any(inputs[0] != 0.0, axis=-1)  # Masking(0.0) on the sequence input
    assert_export_matches(model, inputs, outputs, [masked], ATOL)
    model.save(tmp_path / "model.zip")  # layerserve's own archive records the release
    np.testing.assert_allclose(load_model(tmp_path / "model.zip").predict(inputs), predicted)
