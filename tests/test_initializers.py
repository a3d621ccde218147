from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerserve import _config, initializers
from layerserve.errors import ConfigError, UnknownObjectError
from layerserve.serialization import custom_object_scope, keras_semantics

TRUNCATED_STD = 0.87962566103423978


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("zero", initializers.Zeros),
        ("zeros", initializers.Zeros),
        ("Zeros", initializers.Zeros),
        ("one", initializers.Ones),
        ("ones", initializers.Ones),
        ("constant", initializers.Constant),
        ("uniform", initializers.RandomUniform),
        ("random_uniform", initializers.RandomUniform),
        ("normal", initializers.RandomNormal),
        ("random_normal", initializers.RandomNormal),
        ("truncated_normal", initializers.TruncatedNormal),
        ("TruncatedNormal", initializers.TruncatedNormal),
        ("identity", initializers.Identity),
        ("orthogonal", initializers.Orthogonal),
        ("variance_scaling", initializers.VarianceScaling),
        ("VarianceScaling", initializers.VarianceScaling),
        ("GlorotUniform", initializers.GlorotUniform),
    ],
)
def test_get_by_name(name: str, cls: type) -> None:
    assert type(initializers.get(name)) is cls


FACTORIES = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "normal"),
}
KERAS3_CLASSES = {
    "glorot_uniform": "GlorotUniform",
    "glorot_normal": "GlorotNormal",
    "he_uniform": "HeUniform",
    "he_normal": "HeNormal",
    "lecun_uniform": "LecunUniform",
    "lecun_normal": "LecunNormal",
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_keras2_factories_serialize_as_variance_scaling(name: str) -> None:
    scale, mode, distribution = FACTORIES[name]
    expected = {
        "class_name": "VarianceScaling",
        "config": {"scale": scale, "mode": mode, "distribution": distribution, "seed": None},
    }
    assert initializers.serialize(getattr(initializers, name)()) == expected
    assert initializers.serialize(initializers.get(name)) == expected


@pytest.mark.parametrize("name", sorted(KERAS3_CLASSES))
def test_keras3_classes_serialize_under_their_own_name(name: str) -> None:
    class_name = KERAS3_CLASSES[name]
    with keras_semantics("3.15.1"):
        init = initializers.get(name)
    assert initializers.serialize(init) == {"class_name": class_name, "config": {"seed": None}}
    scale, mode, distribution = FACTORIES[name]
    assert (init.scale, init.mode, init.distribution) == (scale, mode, distribution)


def test_dense_default_kernel_initializer_json_from_spec() -> None:
    assert initializers.serialize(initializers.get("glorot_uniform")) == {
        "class_name": "VarianceScaling",
        "config": {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform", "seed": None},
    }


def test_keras3_dict_deserializes() -> None:
    identifier = {
        "module": "keras.initializers",
        "class_name": "GlorotUniform",
        "config": {"seed": 7, "input_axes": None, "output_axes": None},
        "registered_name": None,
    }
    init = initializers.get(identifier)
    assert isinstance(init, initializers.GlorotUniform)
    assert init.get_config() == {"seed": 7}
    vs = initializers.get(
        {
            "module": "keras.initializers",
            "class_name": "VarianceScaling",
            "config": {"scale": 2.0, "mode": "fan_in", "distribution": "truncated_normal"},
            "registered_name": None,
        }
    )
    assert vs.distribution == "truncated_normal"


@pytest.mark.parametrize(
    ("shape", "fans"),
    [
        ((3, 5), (3.0, 5.0)),
        ((2, 3, 4), (6.0, 8.0)),
        ((3, 3, 4, 8), (36.0, 72.0)),
        ((2, 2, 2, 3, 4), (24.0, 32.0)),
        ((7,), (math.sqrt(7), math.sqrt(7))),
        ((2, 2, 2, 2, 2, 2), (8.0, 8.0)),
        ((), (1.0, 1.0)),
    ],
)
def test_compute_fans(shape: tuple[int, ...], fans: tuple[float, float]) -> None:
    assert initializers.compute_fans(shape) == pytest.approx(fans)


def test_compute_fans_with_explicit_axes() -> None:
    assert initializers.compute_fans((2, 3, 5), input_axes=[0, 1], output_axes=[2]) == (6, 5)


@settings(max_examples=50, deadline=None)
@given(fan_in=st.integers(1, 60), fan_out=st.integers(1, 60), seed=st.integers(0, 2**31))
def test_glorot_uniform_bound(fan_in: int, fan_out: int, seed: int) -> None:
    values = initializers.glorot_uniform(seed=seed)((fan_in, fan_out))
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    assert values.dtype == np.float32
    assert np.all(np.abs(values) <= np.float32(limit))


@pytest.mark.parametrize(
    ("name", "std"),
    [
        ("glorot_uniform", math.sqrt(2.0 / 1000)),
        ("glorot_normal", math.sqrt(2.0 / 1000)),
        ("he_uniform", math.sqrt(2.0 / 400)),
        ("he_normal", math.sqrt(2.0 / 400)),
        ("lecun_uniform", math.sqrt(1.0 / 400)),
        ("lecun_normal", math.sqrt(1.0 / 400)),
    ],
)
def test_named_initializer_statistics(name: str, std: float) -> None:
    values = getattr(initializers, name)(seed=1)((400, 600)).astype(np.float64)
    assert abs(values.mean()) < 0.02 * std
    assert values.std() == pytest.approx(std, rel=0.02)
    if name.endswith("uniform"):
        assert np.abs(values).max() == pytest.approx(std * math.sqrt(3.0), rel=1e-3)
    else:
        assert np.abs(values).max() <= 2.0 * std / TRUNCATED_STD * (1 + 1e-6)


def test_untruncated_normal_is_a_plain_normal() -> None:
    init = initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal", seed=3)
    values = init((500, 400)).astype(np.float64)
    std = math.sqrt(2.0 / 500)
    assert values.std() == pytest.approx(std, rel=0.02)
    assert np.mean(np.abs(values) > 2 * std) == pytest.approx(0.0455, abs=0.005)


@settings(max_examples=50, deadline=None)
@given(
    mean=st.floats(-5, 5),
    stddev=st.floats(0.01, 3),
    seed=st.integers(0, 2**31),
)
def test_truncated_normal_within_two_stddev(mean: float, stddev: float, seed: int) -> None:
    values = initializers.TruncatedNormal(mean, stddev, seed)((50, 20), dtype="float64")
    assert np.all(np.abs(values - mean) <= 2 * stddev * (1 + 1e-12))


def test_truncated_normal_statistics() -> None:
    values = initializers.TruncatedNormal(1.0, 0.5, seed=0)((300, 300), dtype="float64")
    assert values.mean() == pytest.approx(1.0, abs=0.005)
    assert values.std() == pytest.approx(0.5 * TRUNCATED_STD, rel=0.02)


@pytest.mark.parametrize(
    "init",
    [
        initializers.RandomNormal(mean=2.0, stddev=0.5),
        initializers.RandomUniform(minval=-1.0, maxval=3.0),
    ],
    ids=["normal", "uniform"],
)
def test_random_initializer_statistics(init: initializers.Initializer) -> None:
    values = init((300, 300), dtype="float64")
    if isinstance(init, initializers.RandomNormal):
        assert values.mean() == pytest.approx(2.0, abs=0.01)
        assert values.std() == pytest.approx(0.5, rel=0.02)
    else:
        assert values.min() >= -1.0 and values.max() < 3.0
        assert values.std() == pytest.approx(4.0 / math.sqrt(12.0), rel=0.02)


@pytest.mark.parametrize(
    "factory",
    [
        lambda seed: initializers.RandomNormal(seed=seed),
        lambda seed: initializers.RandomUniform(seed=seed),
        lambda seed: initializers.TruncatedNormal(seed=seed),
        lambda seed: initializers.he_normal(seed=seed),
        lambda seed: initializers.Orthogonal(seed=seed),
    ],
    ids=["normal", "uniform", "truncated", "he_normal", "orthogonal"],
)
def test_seeds(factory) -> None:
    state = np.random.get_state()[1].copy()
    seeded = factory(5)
    first = seeded((6, 4))
    np.testing.assert_array_equal(first, seeded((6, 4)))
    np.testing.assert_array_equal(first, factory(5)((6, 4)))
    assert not np.array_equal(first, factory(6)((6, 4)))
    unseeded = factory(None)
    assert not np.array_equal(unseeded((6, 4)), unseeded((6, 4)))
    np.testing.assert_array_equal(np.random.get_state()[1], state)


@settings(max_examples=50, deadline=None)
@given(rows=st.integers(1, 12), cols=st.integers(1, 12), gain=st.floats(0.1, 3.0))
def test_orthogonal_is_orthogonal(rows: int, cols: int, gain: float) -> None:
    q = initializers.Orthogonal(gain=gain, seed=0)((rows, cols), dtype="float64")
    gram = q.T @ q if rows >= cols else q @ q.T
    np.testing.assert_allclose(gram, gain**2 * np.eye(min(rows, cols)), atol=1e-10)


def test_orthogonal_flattens_higher_rank_shapes() -> None:
    q = initializers.Orthogonal(seed=2)((3, 3, 2, 4), dtype="float64")
    flat = q.reshape(18, 4)
    np.testing.assert_allclose(flat.T @ flat, np.eye(4), atol=1e-10)


def test_orthogonal_rejects_rank_1() -> None:
    with pytest.raises(ConfigError, match=r"rank 2 or more. Received: shape=\(5,\)"):
        initializers.Orthogonal()((5,))


def test_identity_tiles_under_keras2() -> None:
    wide = initializers.Identity(gain=2.0)((2, 4))
    np.testing.assert_array_equal(wide, [[2, 0, 2, 0], [0, 2, 0, 2]])
    tall = initializers.Identity()((4, 2))
    np.testing.assert_array_equal(tall, [[1, 0], [0, 1], [1, 0], [0, 1]])
    np.testing.assert_array_equal(initializers.Identity()((3, 3)), np.diag([1.0, 1.0, 1.0]))


def test_identity_pads_with_zeros_under_keras3() -> None:
    with keras_semantics("3.15.1"):
        out = initializers.Identity()((2, 3))
    np.testing.assert_array_equal(out, [[1, 0, 0], [0, 1, 0]])


@pytest.mark.parametrize(
    ("shape", "pattern"),
    [
        ((2, 3), r"multiple of the short side. Received: shape=\(2, 3\)"),
        ((2, 2, 2), r"2D matrices. Received: shape=\(2, 2, 2\)"),
    ],
)
def test_identity_errors(shape: tuple[int, ...], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        initializers.Identity()(shape)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"scale": 0.0}, r"positive.*Received: scale=0.0"),
        ({"scale": -1}, r"positive.*Received: scale=-1"),
        ({"mode": "fan_x"}, r"fan_in, fan_out, fan_avg.*Received: mode='fan_x'"),
        ({"distribution": "gamma"}, r"uniform.*Received: distribution='gamma'"),
    ],
)
def test_variance_scaling_validation(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        initializers.VarianceScaling(**kwargs)


def test_variance_scaling_lowercases_mode_and_distribution() -> None:
    init = initializers.VarianceScaling(mode="FAN_OUT", distribution="Uniform")
    assert init.get_config()["mode"] == "fan_out"
    assert init.get_config()["distribution"] == "uniform"


def test_constant_zeros_ones() -> None:
    np.testing.assert_array_equal(initializers.Constant(3)((2, 2)), [[3, 3], [3, 3]])
    np.testing.assert_array_equal(initializers.Constant([1, 2, 3, 4])((2, 2)), [[1, 2], [3, 4]])
    assert initializers.Constant().get_config() == {"value": 0}
    assert initializers.Zeros()((2,)).tolist() == [0.0, 0.0]
    assert initializers.Ones()((1, 2), dtype="int32").tolist() == [[1, 1]]
    with pytest.raises(ConfigError, match=r"Received: value=\[1, 2, 3\]"):
        initializers.Constant([1, 2, 3])((2, 2))


def test_dtype_defaults_to_floatx() -> None:
    assert initializers.Ones()((2,)).dtype == np.float32
    previous = _config.floatx()
    _config.set_floatx("float64")
    try:
        assert initializers.RandomNormal(seed=1)((2,)).dtype == np.float64
    finally:
        _config.set_floatx(previous)
    assert initializers.Zeros()((2,), dtype="float16").dtype == np.float16


def test_from_config_drops_dtype_and_round_trips() -> None:
    init = initializers.RandomNormal.from_config(
        {"mean": 1.0, "stddev": 2.0, "seed": 4, "dtype": "float32"}
    )
    assert init.get_config() == {"mean": 1.0, "stddev": 2.0, "seed": 4}
    restored = initializers.get(initializers.serialize(init))
    np.testing.assert_array_equal(restored((3, 3)), init((3, 3)))


def test_get_instances_callables_and_custom_objects() -> None:
    init = initializers.Ones()
    assert initializers.get(init) is init

    def my_init(shape: tuple[int, ...], dtype: object = None) -> np.ndarray:
        return np.full(shape, 7.0)

    assert initializers.get(my_init) is my_init
    assert initializers.serialize(my_init) == "my_init"
    with custom_object_scope({"my_init": my_init}):
        assert initializers.get("my_init") is my_init


def test_unknown_and_uninterpretable_identifiers() -> None:
    with pytest.raises(UnknownObjectError, match=r"Unknown initializer: 'nope'"):
        initializers.get("nope")
    with pytest.raises(UnknownObjectError, match=r"Unknown initializer: 'Nope'"):
        initializers.get({"class_name": "Nope", "config": {}})
    with pytest.raises(ConfigError, match=r"Received: identifier=3"):
        initializers.get(3)


def test_bad_shape() -> None:
    with pytest.raises(ConfigError, match=r"Received: shape=\(None, 3\)"):
        initializers.Zeros()((None, 3))
