"""BatchNormalization against a per-element loop in float64, its weights as each Keras
stores them, tf.keras's virtual batches and multi-axis form, the training path, the
fused-kernel epsilon floor of older TensorFlow, and Keras 2.2 files written by hand."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from layerserve.errors import NotSupportedError, ShapeError
from layerserve.export import to_onnx
from layerserve.layers import BatchNormalization, Masking
from layerserve.models import Sequential, load_model, model_from_json
from layerserve.serialization import keras_semantics

ATOL, RTOL = 1e-5, 1e-5


def randomize(layer, rng):
    """Every weight drawn; variances (and renorm standard deviations) positive."""
    layer.set_weights(
        [
            rng.uniform(0.2, 2.0, w.shape)
            if any(k in v.name for k in ("variance", "stddev"))
            else rng.normal(0.0, 0.7, w.shape)
            for w, v in zip(layer.get_weights(), layer.weights, strict=True)
        ]
    )
    return {v.name: v.numpy().astype(np.float64) for v in layer.weights}


def per_element(x, axes, weights, epsilon, mean=None, variance=None):
    """``gamma * (x - mean) / sqrt(var + eps) + beta`` element by element: each weight
    is read at the element's indices on ``axes`` (weights squeezed to those axes)."""
    x = x.astype(np.float64)
    squeezed = {k: np.asarray(v).reshape([x.shape[a] for a in axes]) for k, v in weights.items()}
    mean = squeezed["moving_mean"] if mean is None else mean
    variance = squeezed["moving_variance"] if variance is None else variance
    out = np.empty_like(x)
    for index in np.ndindex(x.shape):
        c = tuple(index[a] for a in axes)
        value = (x[index] - mean[c]) / np.sqrt(variance[c] + epsilon)
        value *= squeezed["gamma"][c] if "gamma" in squeezed else 1.0
        value += squeezed["beta"][c] if "beta" in squeezed else 0.0
        out[index] = value
    return out


INFERENCE = [
    # (input shape, axis, center, scale, epsilon, Keras version)
    ((5, 4), -1, True, True, 1e-3, "2.2.4"),
    ((3, 4, 2, 3), 1, False, True, 1e-2, "3.15.1"),  # channels_first feature map
    ((3, 2, 3, 4), -1, True, False, 1e-4, "2.15.0"),
    ((3, 4, 5), 1, False, False, 0.5, "3.15.1"),
    ((2, 3, 4, 2), [1, 3], True, True, 1e-3, "2.15.0"),  # tf.keras multi-axis
    ((2, 3, 4, 2), [-3, -1], True, True, 1e-3, "2.15.0"),
    ((4, 2, 3, 2, 3), [4], True, True, 1e-3, "2.21.0"),
]


@pytest.mark.parametrize(("shape", "axis", "center", "scale", "epsilon", "version"), INFERENCE)
def test_inference_uses_the_moving_statistics(rng, shape, axis, center, scale, epsilon, version):
    with keras_semantics(version):
        layer = BatchNormalization(axis=axis, center=center, scale=scale, epsilon=epsilon)
    x = rng.normal(0.5, 2.0, shape).astype("float32")
    layer(x)
    weights = randomize(layer, rng)
    axes = [a % len(shape) for a in ([axis] if isinstance(axis, int) else axis)]
    y = layer(x)
    assert y.dtype == np.float32 and y.shape == shape
    np.testing.assert_allclose(y, per_element(x, axes, weights, epsilon), rtol=RTOL, atol=ATOL)
    assert layer.compute_output_shape((None, *shape[1:])) == (None, *shape[1:])


def test_default_epsilon_is_keras_1e3_not_onnx_1e5(rng):
    layer = BatchNormalization()
    assert layer.epsilon == 1e-3 and layer.get_config()["epsilon"] == 1e-3
    x = rng.normal(size=(4, 3)).astype("float32")
    layer(x)
    layer.set_weights([np.ones(3), np.zeros(3), np.zeros(3), np.full(3, 1e-3)])
    np.testing.assert_allclose(layer(x), x / np.sqrt(2e-3), rtol=RTOL)
    assert np.max(np.abs(layer(x) - x / np.sqrt(1e-3 + 1e-5))) > 1.0


def test_weights_in_saved_order_with_their_trainability():
    layer = BatchNormalization(renorm=True)
    layer(np.zeros((2, 3), "float32"))
    assert [v.name for v in layer.weights] == [
        "gamma",
        "beta",
        "moving_mean",
        "moving_variance",
        "moving_stddev",
        "renorm_mean",
        "renorm_stddev",
    ]
    assert [v.name for v in layer.trainable_weights] == ["gamma", "beta"]
    # Renorm's standard deviations start at the root of the variance initializer's value.
    constant = {"class_name": "Constant", "config": {"value": 4.0}}
    stddev = BatchNormalization(renorm=True, moving_variance_initializer=constant)
    stddev(np.zeros((1, 2), "float32"))
    np.testing.assert_allclose(stddev.get_weights()[4], [2.0, 2.0])
    frozen = BatchNormalization(center=False, trainable=False)
    frozen(np.zeros((2, 3), "float32"))
    assert [v.name for v in frozen.weights] == ["gamma", "moving_mean", "moving_variance"]
    assert frozen.trainable_weights == []


def test_tf_keras_multi_axis_weights_are_full_rank():
    with keras_semantics("2.15.0"):
        layer = BatchNormalization(axis=[1, 3])
    layer(np.zeros((2, 4, 5, 3), "float32"))
    assert [w.shape for w in layer.get_weights()] == [(1, 4, 1, 3)] * 4
    assert layer.get_config()["axis"] == [1, 3]


def test_virtual_batch_weights_and_shifted_axis_round_trip(rng):
    """tf.keras adds a leading-1 dim at position 1 and saves the axis shifted by one."""
    with keras_semantics("2.15.0"):
        layer = BatchNormalization(virtual_batch_size=2)
        x = rng.normal(size=(6, 3)).astype("float32")
        layer(x)
        assert [w.shape for w in layer.get_weights()] == [(1, 1, 3)] * 4
        config = layer.get_config()
        assert config["axis"] == [2] and config["virtual_batch_size"] == 2
        weights = randomize(layer, rng)
        twin = BatchNormalization.from_config(config)
        twin(x)
        twin.set_weights(layer.get_weights())
        assert twin.axes == (1,)
        np.testing.assert_allclose(twin(x), per_element(x, [1], weights, 1e-3), rtol=RTOL)
        # An unbuilt layer's non-negative list is written shifted too, and read back.
        unbuilt = BatchNormalization(axis=[1], virtual_batch_size=4)
        assert unbuilt.get_config()["axis"] == [2]
        assert BatchNormalization.from_config(unbuilt.get_config()).axis == [1]
        negative = BatchNormalization(axis=[-1], virtual_batch_size=4)
        assert BatchNormalization.from_config(negative.get_config()).axis == [-1]


def batch_statistics(x, axes, weights, epsilon, mask=None):
    reduction = tuple(i for i in range(x.ndim) if i not in axes)
    x64 = x.astype(np.float64)
    w = np.ones_like(x64) if mask is None else np.broadcast_to(mask[..., None], x.shape)
    mean = (w * x64).sum(reduction, keepdims=True) / w.sum(reduction, keepdims=True)
    variance = (w * (x64 - mean) ** 2).sum(reduction, keepdims=True) / w.sum(
        reduction, keepdims=True
    )
    shape = [x.shape[a] for a in axes]
    return per_element(x, axes, weights, epsilon, mean.reshape(shape), variance.reshape(shape))


def test_training_normalizes_with_the_batch_statistics(rng):
    layer = BatchNormalization(axis=1)
    x = rng.normal(3.0, 2.0, (5, 3, 4)).astype("float32")
    layer(x)
    weights = randomize(layer, rng)
    before = layer.get_weights()
    np.testing.assert_allclose(
        layer(x, training=True), batch_statistics(x, [1], weights, 1e-3), rtol=RTOL, atol=ATOL
    )
    for got, want in zip(layer.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)  # no moving-average update
    layer.trainable = False  # a frozen layer runs in inference mode, as in Keras 3/tf.keras
    np.testing.assert_allclose(layer(x, training=True), per_element(x, [1], weights, 1e-3), 1e-5)


@pytest.mark.parametrize(
    ("version", "shape", "masked"),
    [
        ("3.15.1", (4, 5, 3), True),
        ("2.15.0", (4, 5, 3), True),  # tf.keras's unfused path weights by the mask
        ("2.15.0", (4, 5, 2, 3), False),  # ...its fused path (rank 4) ignores it
        ("2.2.4", (4, 5, 3), False),  # Keras 2.2's call takes no mask
    ],
)
def test_training_moments_are_weighted_by_the_mask(rng, version, shape, masked):
    with keras_semantics(version):
        layer = BatchNormalization()
    x = rng.normal(size=shape).astype("float32")
    mask = rng.random(shape[:-1]) < 0.6
    layer(x)
    weights = randomize(layer, rng)
    expected = batch_statistics(x, [len(shape) - 1], weights, 1e-3, mask if masked else None)
    got = layer(x, training=True, mask=mask)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_training_refusals(rng):
    with keras_semantics("3.15.1"):
        layer = BatchNormalization()
    x = rng.normal(size=(4, 5, 3)).astype("float32")
    for training in (True, False):
        with pytest.raises(ShapeError, match=r"one dimension less than the inputs"):
            layer(x, training=training, mask=np.ones((4,), bool))
    renorm = BatchNormalization(renorm=True)
    renorm(x)
    with pytest.raises(NotSupportedError, match=r"`renorm` has no reference for training"):
        renorm(x, training=True)


def fused_model(version, epsilon, variance, shape=(3, 3, 2), axis=-1):
    with keras_semantics(version):
        model = Sequential([BatchNormalization(axis=axis, epsilon=epsilon, input_shape=shape)])
    channels = shape[axis] if axis == -1 else shape[axis - 1]
    model.layers[0].set_weights(
        [np.ones(channels), np.zeros(channels), np.zeros(channels), np.full(channels, variance)]
    )
    return model


def onnx_predict(model, x):
    from layerserve.export.parity import session

    runner = session(to_onnx(model))
    return runner.run(None, {runner.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("version", ["2.2.4", "2.9.0"])
def test_fused_epsilon_floor_of_older_tensorflow_is_applied(rng, version):
    """Keras 2.2 (channels last) and tf.keras up to 2.9 ran these layers on TensorFlow's
    fused kernel, whose wrapper raised epsilon to 1.001e-5."""
    x = rng.normal(size=(2, 3, 3, 2)).astype("float32")
    model = fused_model(version, 1e-6, 1e-4)
    expected = x / np.sqrt(1e-4 + 1.001e-5)
    np.testing.assert_allclose(model.predict(x), expected, rtol=RTOL)
    np.testing.assert_allclose(onnx_predict(model, x), expected, rtol=RTOL)
    assert np.max(np.abs(expected - x / np.sqrt(1e-4 + 1e-6))) > 1e-2


@pytest.mark.parametrize(
    ("version", "shape", "axis"),
    [
        ("2.15.0", (3, 3, 2), -1),  # a TensorFlow between 2.9 (floor) and 2.21 (none)
        ("2.15.0", (2, 3, 3, 2), 1),  # rank 5, channels first: fused too
        ("2.2.4", (2, 3, 3), 1),  # channels first: fused on GPU only
    ],
)
def test_possibly_clamped_fused_epsilon_is_refused_where_it_changes_the_numbers(
    rng, version, shape, axis
):
    x = rng.normal(size=(2, *shape)).astype("float32")
    model = fused_model(version, 1e-6, 1e-4, shape, axis)
    with pytest.raises(
        NotSupportedError,
        match=r"epsilon=1e-06 < 1.001e-05 on a (possibly )?fused TensorFlow batch norm",
    ):
        model.predict(x)
    with pytest.raises(NotSupportedError, match=r"the file does not say which ran it"):
        to_onnx(model)
    # Where both epsilons give the same float32 numbers, the file's epsilon is used.
    model = fused_model(version, 1e-6, 1e3, shape, axis)
    np.testing.assert_allclose(model.predict(x), x / np.sqrt(1e3 + 1e-6), rtol=RTOL)


@pytest.mark.parametrize(
    ("version", "shape"),
    [("2.21.0", (3, 3, 2)), ("3.15.1", (3, 3, 2)), ("2.9.0", (3, 2)), ("2.2.4", (3, 3, 3, 2))],
)
def test_small_epsilon_off_the_fused_path_is_used_as_written(rng, version, shape):
    x = rng.normal(size=(2, *shape)).astype("float32")
    model = fused_model(version, 1e-6, 1e-4, shape)
    np.testing.assert_allclose(model.predict(x), x / np.sqrt(1e-4 + 1e-6), rtol=RTOL)


def test_mask_passes_through(rng):
    x = rng.normal(size=(2, 4, 3)).astype("float32")
    x[0, 1] = 0
    model = Sequential([Masking(input_shape=(4, 3)), BatchNormalization()])
    np.testing.assert_array_equal(model.compute_mask(x), np.any(x != 0, axis=-1))


def test_config_round_trip_keeps_every_argument():
    layer = BatchNormalization(
        axis=[1],
        momentum=0.5,
        epsilon=0.01,
        center=False,
        beta_initializer="ones",
        moving_variance_initializer="random_uniform",
        gamma_regularizer="l2",
        gamma_constraint="non_neg",
        renorm=True,
        renorm_clipping={"rmax": 2.0},
        renorm_momentum=0.5,
        fused=False,
        synchronized=True,
        name="bn",
    )
    config = layer.get_config()
    json.dumps(config)
    assert BatchNormalization.from_config(config).get_config() == config
    assert config["renorm_clipping"] == {"rmax": 2.0} and config["synchronized"] is True
    plain = BatchNormalization().get_config()
    assert "renorm" not in plain and "fused" not in plain and "virtual_batch_size" not in plain


# ---- Keras 2.2.4 files, written by hand as Keras 2.2.4 writes them --------------------------

ZEROS, ONES = '{"class_name": "Zeros", "config": {}}', '{"class_name": "Ones", "config": {}}'


def keras_224_document(axis, center, shape):
    bn = (
        f'{{"name": "batch_normalization_1", "trainable": true, "batch_input_shape": '
        f'{json.dumps([None, *shape])}, "dtype": "float32", "axis": {axis}, '
        f'"momentum": 0.99, "epsilon": 0.001, "center": {json.dumps(center)}, "scale": true, '
        f'"beta_initializer": {ZEROS}, "gamma_initializer": {ONES}, '
        f'"moving_mean_initializer": {ZEROS}, "moving_variance_initializer": {ONES}, '
        '"beta_regularizer": null, "gamma_regularizer": null, "beta_constraint": null, '
        '"gamma_constraint": null}'
    )
    return (
        '{"class_name": "Sequential", "config": {"name": "sequential_1", "layers": '
        f'[{{"class_name": "BatchNormalization", "config": {bn}}}]}}, '
        '"keras_version": "2.2.4", "backend": "tensorflow"}'
    )


def write_224_weights(group, weights):
    """``weight_names`` in Keras's order; datasets created in reverse to show that the
    attribute, not HDF5's (alphabetical) iteration, decides the order."""
    name = "batch_normalization_1"
    group.attrs["layer_names"] = np.array([name.encode()])
    group.attrs["keras_version"], group.attrs["backend"] = b"2.2.4", b"tensorflow"
    layer = group.create_group(name)
    names = [f"{name}/{w}:0" for w in weights]
    layer.attrs["weight_names"] = np.array([n.encode() for n in names])
    for key, value in reversed(list(zip(names, weights.values(), strict=True))):
        layer.create_dataset(key, data=np.asarray(value, "float32"))


@pytest.mark.parametrize("storage", ["model_h5", "json_weights_h5"])
@pytest.mark.parametrize(("axis", "center", "shape"), [(-1, True, (4, 3)), (1, False, (3, 2, 2))])
def test_keras_224_files(tmp_path: Path, rng, storage, axis, center, shape):
    channels = shape[-1] if axis == -1 else shape[axis - 1]
    weights = {"gamma": rng.normal(size=channels)}
    if center:
        weights["beta"] = rng.normal(size=channels)
    weights["moving_mean"] = rng.normal(size=channels)
    weights["moving_variance"] = rng.uniform(0.5, 2.0, channels)
    document = keras_224_document(axis, center, shape)
    if storage == "model_h5":
        path = tmp_path / "model.h5"
        parsed = json.loads(document)
        with h5py.File(path, "w") as handle:
            handle.attrs["keras_version"], handle.attrs["backend"] = b"2.2.4", b"tensorflow"
            config = {"class_name": "Sequential", "config": parsed["config"]}
            handle.attrs["model_config"] = json.dumps(config).encode()
            write_224_weights(handle.create_group("model_weights"), weights)
        model = load_model(path)
    else:
        with h5py.File(tmp_path / "weights.h5", "w") as handle:
            write_224_weights(handle, weights)
        model = model_from_json(document)
        model.load_weights(tmp_path / "weights.h5")
    assert model.layers[0].keras_version == (2, 2, 4)
    x = rng.normal(size=(3, *shape)).astype("float32")
    axes = [len(shape)] if axis == -1 else [axis]
    expected = per_element(x, axes, weights, 1e-3)
    np.testing.assert_allclose(model.predict(x), expected, rtol=RTOL, atol=ATOL)
    # The same numbers from the ONNX graph.
    from layerserve.export.parity import session

    runner = session(to_onnx(model))
    got = runner.run(None, {runner.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_input_spec_pins_rank_and_channels_after_build():
    model = Sequential([BatchNormalization(input_shape=(4, 3))])
    with pytest.raises(ShapeError, match=r"expected axis 2 of input shape to have value 3"):
        model.layers[-1](np.zeros((2, 4, 5), "float32"))


def test_tf_keras_sync_batch_normalization_loads_as_batch_normalization(rng):
    """``SyncBatchNormalization`` (deprecated tf.keras name) only synchronizes training."""
    document = json.loads(keras_224_document(-1, True, (4,)))
    document["keras_version"] = "2.15.0"
    document["config"]["layers"][0]["class_name"] = "SyncBatchNormalization"
    model = model_from_json(json.dumps(document))
    assert type(model.layers[0]) is BatchNormalization
    weights = randomize(model.layers[0], rng)
    x = rng.normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(model.predict(x), per_element(x, [1], weights, 1e-3), rtol=RTOL)
