"""Real Keras 3 is the oracle: models it builds, saved in every format it writes, must
load in layerserve and predict (and mask) exactly as Keras does.

Formats: the ``.keras`` archive, the legacy ``.h5`` file and ``to_json()`` plus
``save_weights('*.weights.h5')``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras import layers as kl  # noqa: E402

from layerserve.models import load_model, model_from_json  # noqa: E402

# Keras-internal NumPy 2 noise, not about layerserve.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
ATOL = 1e-5
BATCH_SIZES = (1, 5)
FORMATS = ("keras", "h5", "json+weights")
# (sample, timestep) pairs zeroed in the inputs of masking cases: interior steps, a
# leading step and a trailing step, different per sample.
MASKED_STEPS = ((0, 1), (0, 2), (1, 0), (1, 3), (2, 4), (3, 1), (4, 2), (4, 3))


def seq(input_shape: tuple[int, ...], *layers: keras.layers.Layer) -> keras.Model:
    return keras.Sequential([keras.Input(input_shape), *layers])


def dense_activation(name: str) -> Callable[[], keras.Model]:
    return lambda: seq((5,), kl.Dense(6, activation=name))


def lstm_return_state() -> keras.Model:
    inp = keras.Input((5, 3))
    out, h, c = kl.LSTM(3, return_sequences=True, return_state=True)(inp)
    return keras.Model(inp, [out, h, c])


def masked_lstm_state() -> keras.Model:
    inp = keras.Input((5, 3))
    masked = kl.Masking()(inp)
    out, h, c = kl.LSTM(3, return_state=True)(masked)
    seqs = kl.LSTM(2, return_sequences=True, go_backwards=True)(masked)
    return keras.Model(inp, [out, h, c, seqs])


def masked_lstm_functional() -> keras.Model:
    inp = keras.Input((5, 3))
    masked = kl.Masking()(inp)
    hidden = kl.Dense(4, activation="tanh")(masked)
    out = kl.LSTM(3, return_sequences=True)(hidden)
    return keras.Model(inp, out)


def two_in_two_out() -> keras.Model:
    a = keras.Input((4,), name="a")
    b = keras.Input((5, 3), name="b")
    out_a = kl.Dense(2, activation="relu", name="out_a")(kl.Dense(3)(a))
    masked = kl.Masking()(b)
    out_b = kl.LSTM(2, name="out_b")(kl.Dense(3)(masked))
    return keras.Model([a, b], [out_a, out_b])


def nested_sequential() -> keras.Model:
    inner = keras.Sequential(
        [keras.Input((4,)), kl.Dense(3, activation="relu"), kl.Dense(2)], name="inner"
    )
    inp = keras.Input((4,))
    hidden = kl.Dense(4, activation="tanh")(inp)
    return keras.Model(inp, kl.Dense(1)(inner(hidden)))


def shared_two_inputs() -> keras.Model:
    a, b = keras.Input((3,)), keras.Input((3,))
    shared = kl.Dense(2, activation="elu")
    return keras.Model([a, b], [shared(a), shared(b)])


def shared_chain() -> keras.Model:
    inp = keras.Input((3,))
    shared = kl.Dense(3, activation="tanh")
    return keras.Model(inp, kl.Dense(2)(shared(shared(inp))))


def nested_functional() -> keras.Model:
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, kl.Dense(3, activation="relu")(inner_in), name="inner_fn")
    inp = keras.Input((4,))
    return keras.Model(inp, kl.Dense(2)(inner(kl.Dense(4)(inp))))


def sequential_in_sequential() -> keras.Model:
    inner = keras.Sequential([keras.Input((4,)), kl.Dense(3, activation="selu")], name="inner")
    return keras.Sequential([keras.Input((5,)), kl.Dense(4), inner, kl.Dense(2)])


def built_without_input() -> keras.Model:
    model = keras.Sequential([kl.Dense(3, activation="relu"), kl.Dense(2)])
    model.build((None, 4))
    return model


def frozen_layers() -> keras.Model:
    model = seq((5, 3), kl.LSTM(3, use_bias=False, return_sequences=True), kl.Dense(2))
    model.layers[0].trainable = False
    return model


ACTIVATIONS = (
    "hard_sigmoid",
    "softmax",
    "selu",
    "elu",
    "gelu",
    "swish",
    "silu",
    "relu6",
    "leaky_relu",
    "mish",
    "log_softmax",
    "hard_silu",
    "sigmoid",
    "softplus",
    "softsign",
)

CASES: dict[str, tuple[Callable[[], keras.Model], bool]] = {
    # id: (builder, mask some timesteps of the input)
    "dense_rank2": (lambda: seq((5,), kl.Dense(3)), False),
    "dense_rank3": (lambda: seq((4, 5), kl.Dense(3, activation="tanh")), False),
    **{f"dense_{name}": (dense_activation(name), False) for name in ACTIVATIONS},
    "activation_layers": (
        lambda: seq((4, 5), kl.Activation("hard_sigmoid"), kl.Dense(3), kl.Activation("softmax")),
        False,
    ),
    "dropout": (lambda: seq((5,), kl.Dense(4), kl.Dropout(0.5), kl.Dense(2)), False),
    "spatial_dropout1d": (lambda: seq((4, 3), kl.SpatialDropout1D(0.5), kl.Dense(2)), False),
    "spatial_dropout2d": (
        lambda: seq(
            (2, 4, 4),
            kl.SpatialDropout2D(0.5, data_format="channels_first"),
            kl.Conv2D(2, 2, data_format="channels_first"),
        ),
        False,
    ),
    "spatial_dropout3d": (
        lambda: seq((2, 3, 3, 2), kl.SpatialDropout3D(0.3), kl.Flatten(), kl.Dense(2)),
        False,
    ),
    "flatten_channels_first_after_cf_conv": (
        lambda: seq(
            (2, 5, 5),
            kl.Conv2D(3, 2, data_format="channels_first"),
            kl.Flatten(data_format="channels_first"),
            kl.Dense(2),
        ),
        False,
    ),
    "flatten_channels_last_after_cf_conv": (
        lambda: seq(
            (2, 5, 5),
            kl.Conv2D(3, 2, data_format="channels_first"),
            kl.Flatten(data_format="channels_last"),
            kl.Dense(2),
        ),
        False,
    ),
    "flatten_channels_last": (
        lambda: seq((5, 5, 2), kl.Conv2D(3, 2), kl.Flatten(), kl.Dense(2)),
        False,
    ),
    "reshape_minus_one": (lambda: seq((4, 6), kl.Reshape((-1, 3)), kl.Dense(2)), False),
    "permute": (lambda: seq((3, 4, 2), kl.Permute((3, 1, 2)), kl.Dense(2)), False),
    "repeat_vector": (
        lambda: seq((3,), kl.RepeatVector(4), kl.LSTM(2, return_sequences=True)),
        False,
    ),
    "activity_regularization": (
        lambda: seq((4,), kl.ActivityRegularization(l1=0.1, l2=0.2), kl.Dense(2)),
        False,
    ),
    "masking_dense": (lambda: seq((5, 3), kl.Masking(), kl.Dense(2), kl.Activation("relu")), True),
    "masking_then_flatten": (lambda: seq((5, 3), kl.Masking(), kl.Flatten(), kl.Dense(2)), True),
    "conv2d_strides_same": (
        lambda: seq((7, 7, 2), kl.Conv2D(3, 3, strides=2, padding="same")),
        False,
    ),
    "conv2d_valid_dilation": (
        lambda: seq((8, 8, 2), kl.Conv2D(3, 3, dilation_rate=2, padding="valid")),
        False,
    ),
    "conv2d_same_dilation_rect": (
        lambda: seq(
            (7, 6, 2), kl.Conv2D(2, (3, 2), dilation_rate=(2, 1), padding="same", activation="relu")
        ),
        False,
    ),
    "conv2d_channels_first_strided": (
        lambda: seq(
            (2, 7, 7), kl.Conv2D(3, 3, strides=(2, 1), padding="same", data_format="channels_first")
        ),
        False,
    ),
    "conv2d_no_bias": (lambda: seq((6, 6, 3), kl.Conv2D(4, 2, use_bias=False)), False),
    "lstm_last": (lambda: seq((5, 3), kl.LSTM(4)), False),
    "lstm_sequences": (lambda: seq((5, 3), kl.LSTM(4, return_sequences=True)), False),
    "lstm_go_backwards": (
        lambda: seq((5, 3), kl.LSTM(3, go_backwards=True, return_sequences=True)),
        False,
    ),
    "lstm_hard_sigmoid": (
        lambda: seq((5, 3), kl.LSTM(3, recurrent_activation="hard_sigmoid")),
        False,
    ),
    "lstm_return_state": (lstm_return_state, False),
    "masking_lstm_sequential": (
        lambda: seq((5, 3), kl.Masking(), kl.LSTM(3, return_sequences=True)),
        True,
    ),
    "masking_lstm_last_sequential": (lambda: seq((5, 3), kl.Masking(), kl.LSTM(3)), True),
    "masking_lstm_functional": (masked_lstm_functional, True),
    "masking_lstm_state_backwards": (masked_lstm_state, True),
    "two_inputs_two_outputs": (two_in_two_out, True),
    "nested_sequential": (nested_sequential, False),
    "shared_layer_two_inputs": (shared_two_inputs, False),
    "shared_layer_chain": (shared_chain, False),
    "nested_functional": (nested_functional, False),
    "sequential_in_sequential": (sequential_in_sequential, False),
    "sequential_built_without_input": (built_without_input, False),
    "frozen_lstm_without_bias": (frozen_layers, False),
}


# ---- building and saving with Keras (once per case) --------------------------------------


class Reference:
    """One Keras model, its inputs, its outputs and masks, and its saved files."""

    def __init__(self, case_id: str, directory: Path) -> None:
        builder, masked = CASES[case_id]
        index = sorted(CASES).index(case_id)
        keras.utils.set_random_seed(index)
        self.model = builder()
        rng = np.random.default_rng(index)
        # Random weights everywhere (biases included), so every weight matters.
        self.model.set_weights(
            [rng.normal(0.0, 0.5, w.shape).astype(w.dtype) for w in self.model.get_weights()]
        )
        arrays = []
        for tensor in self.model.inputs:
            x = rng.normal(0.0, 2.0, (max(BATCH_SIZES), *tensor.shape[1:])).astype("float32")
            if masked and x.ndim == 3:
                for sample, step in MASKED_STEPS:
                    x[sample, step] = 0.0
            arrays.append(x)
        self.multi_input = len(arrays) > 1
        self.inputs = {n: self._feed([a[:n] for a in arrays]) for n in BATCH_SIZES}
        self.outputs = {}
        self.masks = {}
        for n, x in self.inputs.items():
            result = self.model(x, training=False)
            flat = result if isinstance(result, (list, tuple)) else [result]
            self.outputs[n] = [np.asarray(y) for y in flat]
            self.masks[n] = [_mask_or_none(getattr(y, "_keras_mask", None)) for y in flat]
        self.directory = directory
        self.case_id = case_id

    def _feed(self, arrays: list[np.ndarray]) -> Any:
        return arrays if self.multi_input else arrays[0]

    def load(self, fmt: str) -> Any:
        stem = self.directory / self.case_id
        if fmt == "keras":
            self.model.save(f"{stem}.keras")
            return load_model(f"{stem}.keras")
        if fmt == "h5":
            self.model.save(f"{stem}.h5")
            return load_model(f"{stem}.h5")
        self.model.save_weights(f"{stem}.weights.h5")
        model = model_from_json(self.model.to_json())
        model.load_weights(f"{stem}.weights.h5")
        return model


def _mask_or_none(mask: Any) -> np.ndarray | None:
    return None if mask is None else np.asarray(mask, dtype=bool)


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Reference]:
    directory = tmp_path_factory.mktemp("keras3-oracle")
    cache: dict[str, Reference] = {}

    def get(case_id: str) -> Reference:
        if case_id not in cache:
            cache[case_id] = Reference(case_id, directory)
        return cache[case_id]

    return get


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case_id", list(CASES))
def test_layerserve_reproduces_keras3(
    references: Callable[[str], Reference], case_id: str, fmt: str
) -> None:
    ref = references(case_id)
    model = ref.load(fmt)
    for n in BATCH_SIZES:
        x = ref.inputs[n]
        predicted = _as_list(model.predict(x))
        assert len(predicted) == len(ref.outputs[n])
        for got, want in zip(predicted, ref.outputs[n], strict=True):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
        masks = _as_list(model.compute_mask(x))
        assert len(masks) == len(ref.masks[n])
        for got, want in zip(masks, ref.masks[n], strict=True):
            if want is None:
                assert got is None
            else:
                np.testing.assert_array_equal(np.asarray(got, dtype=bool), want)


def test_masking_cases_really_mask_interior_steps(references: Callable[[str], Reference]) -> None:
    """Guard for the table above: Keras's own masks hide interior, not only trailing, steps."""
    mask = references("masking_lstm_sequential").masks[5][0]
    assert mask is not None and not mask[0, 1] and mask[0, 3] and not mask[4, 2]


# ---- activity regularizer: Keras 3.15 divides the penalty by the batch size ------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_activity_regularizer_loss_matches_keras(tmp_path: Path, fmt: str) -> None:
    keras_model = seq(
        (3,),
        kl.Dense(2, kernel_initializer="ones", activity_regularizer=keras.regularizers.L1(1.0)),
    )
    x = np.ones((4, 3), dtype="float32")
    keras_model(x, training=True)
    expected = float(sum(np.asarray(loss) for loss in keras_model.losses))
    assert expected == pytest.approx(6.0)  # spec section 5: 24 / batch of 4
    if fmt == "keras":
        keras_model.save(tmp_path / "m.keras")
        model = load_model(tmp_path / "m.keras")
    elif fmt == "h5":
        keras_model.save(tmp_path / "m.h5")
        model = load_model(tmp_path / "m.h5")
    else:
        keras_model.save_weights(tmp_path / "m.weights.h5")
        model = model_from_json(keras_model.to_json())
        model.load_weights(tmp_path / "m.weights.h5")
    model(x, training=True)
    assert sum(model.losses) == pytest.approx(expected, rel=1e-6)
