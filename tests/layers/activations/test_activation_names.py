"""Activation names follow the Keras version that wrote a file: which names exist (the
tables below are written from the Keras sources of each release), what each means,
aliases, sparsemax's version rules, activation layers stored as activations, and custom
functions that take a name's place."""

import importlib.util
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from layerserve import activations
from layerserve.errors import ConfigError, NotSupportedError, UnknownObjectError
from layerserve.layers import Dense, LeakyReLU, ReLU
from layerserve.serialization import custom_object_scope, keras_semantics, parse_version

MBK_2_2_0 = {
    "elu", "hard_sigmoid", "linear", "relu", "selu", "sigmoid", "softmax", "softplus",
    "softsign", "tanh",
}  # fmt: skip
MBK_2_2_3 = MBK_2_2_0 | {"exponential"}
TF_KERAS_2_4 = MBK_2_2_3 | {"gelu", "softmax_v2", "swish"}
TF_KERAS = TF_KERAS_2_4 | {"leaky_relu", "log_softmax", "relu6", "silu"}  # 2.6+
KERAS_3_0_0 = (TF_KERAS - {"softmax_v2"}) | {"mish"}
KERAS_3_7 = KERAS_3_0_0 | {
    "hard_silu", "hard_swish", "celu", "glu", "hard_shrink", "hard_tanh", "log_sigmoid",
    "soft_shrink", "squareplus", "tanh_shrink",
}  # fmt: skip
TABLE = {
    "2.2.0": MBK_2_2_0,
    "2.2.2": MBK_2_2_0,
    "2.2.4": MBK_2_2_3,
    "2.3.1": MBK_2_2_3,
    "2.4.0": TF_KERAS_2_4,
    "2.5.0": TF_KERAS_2_4,
    "2.6.0": TF_KERAS,
    "2.12.0": TF_KERAS,
    "2.13.1": TF_KERAS | {"mish"},
    "2.21.0": TF_KERAS | {"mish"},
    "3.0.0": KERAS_3_0_0,
    "3.0.1": KERAS_3_0_0 | {"hard_silu", "hard_swish"},
    "3.6.0": KERAS_3_0_0 | {"hard_silu", "hard_swish"},
    "3.7.0": KERAS_3_7,
    "3.8.0": KERAS_3_7 | {"sparse_plus", "sparsemax", "threshold"},
    "3.10.0": KERAS_3_7 | {"sparse_plus", "sparsemax", "threshold", "sparse_sigmoid"},
    "3.15.1": KERAS_3_7 | {"sparse_plus", "sparsemax", "threshold", "sparse_sigmoid"},
}


@pytest.mark.parametrize(("version", "names"), TABLE.items(), ids=TABLE.keys())
def test_names_each_version_has(version, names):
    assert set(activations.available_names(parse_version(version))) == names


def _oracle_lists():
    path = Path(__file__).with_name("keras_cases.py")
    spec = importlib.util.spec_from_file_location("activation_keras_cases", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tables_agree_with_the_names_the_installed_keras_resolves():
    # keras_cases.py checks its lists against keras 3.15.1 and tf_keras 2.21 while the
    # oracle files are written; softmax_v2 is read from older tf.keras files only
    cases = _oracle_lists()
    assert TABLE["3.15.1"] == set(cases.KERAS3_NAMES) | set(cases.KERAS3_UNCALLABLE)
    assert TABLE["2.21.0"] == set(cases.TF_KERAS_NAMES) | {"softmax_v2"}


@pytest.mark.parametrize("version", TABLE)
def test_names_absent_from_a_version_are_errors_naming_them(version):
    absent = set(activations.available_names()) - TABLE[version]
    with keras_semantics(version):
        for name in absent:
            with pytest.raises(UnknownObjectError, match=f"'{name}' does not exist in Keras"):
                activations.get(name)


@pytest.mark.parametrize(
    ("version", "name", "function"),
    [
        ("2.2.4", "hard_sigmoid", activations.hard_sigmoid),
        ("2.15.0", "hard_sigmoid", activations.hard_sigmoid),
        ("3.0.0", "hard_sigmoid", activations.hard_sigmoid_v3),
        ("3.15.1", "hard_sigmoid_v3", activations.hard_sigmoid_v3),
        ("2.2.4", "hard_sigmoid_v3", activations.hard_sigmoid_v3),
        ("2.15.0", "softmax_v2", activations.softmax),
        ("2.15.0", "swish", activations.silu),
        ("3.15.1", "swish", activations.silu),
        ("3.15.1", "hard_swish", activations.hard_silu),
        ("2.15.0", "leaky_relu", activations.leaky_relu),
        ("3.15.1", "gelu", activations.gelu),
    ],
)
def test_what_names_mean(version, name, function):
    with keras_semantics(version):
        assert activations.get(name) is function


def test_leaky_relu_by_name_has_slope_0_2_and_gelu_is_exact():
    with keras_semantics("2.15.0"):
        assert activations.get("leaky_relu")(np.array([-1.0]))[0] == pytest.approx(-0.2)
        gelu = activations.get("gelu")(np.array([1.0]))[0]
    assert gelu == pytest.approx(0.5 * (1 + math.erf(1 / math.sqrt(2))), rel=1e-12)


def test_models_built_in_code_have_every_name_with_keras2_meanings():
    assert activations.get("celu") is activations.celu
    assert activations.get("hard_sigmoid") is activations.hard_sigmoid
    Dense(3, activation="sparse_plus")


def test_threshold_cannot_be_used_by_name_anywhere():
    for context in (keras_semantics("3.8.0"), keras_semantics("3.15.1")):
        with context, pytest.raises(ConfigError, match="'threshold' needs its `threshold`"):
            activations.get("threshold")
    with pytest.raises(ConfigError, match="Received: activation='threshold'"):
        activations.get("threshold")
    with keras_semantics("3.7.0"), pytest.raises(UnknownObjectError, match="from 3.8.0"):
        activations.get("threshold")


def test_sparsemax_warns_from_3_8_to_3_15_1_and_is_refused_after():
    for version in ("3.8.0", "3.15.1"):
        with keras_semantics(version), pytest.warns(UserWarning, match="#23425"):
            assert activations.get("sparsemax") is activations.sparsemax
    with keras_semantics("3.15.2"), pytest.raises(NotSupportedError, match="Keras 3.15.2"):
        activations.get("sparsemax")


def test_sparsemax_is_kerass_formula_not_the_published_one():
    x = np.array([0.1, 1.2, 0.3, 1.0], dtype=np.float32)
    np.testing.assert_array_equal(activations.sparsemax(x), 0.0)  # spec section 12
    # with one input in the support both formulas agree
    np.testing.assert_allclose(activations.sparsemax(np.array([0.0, 3.0, 0.5])), [0, 1, 0])


def _sparsemax_by_hand(row):
    z = sorted(row, reverse=True)
    cumulative = [sum(z[: j + 1]) for j in range(len(z))]
    support = [j for j in range(len(z)) if z[j] - (cumulative[j] - 1) / (j + 1) > 0]
    tau = (sum(cumulative[j] for j in support) - 1) / len(support)
    return [max(v - tau, 0.0) for v in row]


def test_sparsemax_matches_the_formula_by_hand(rng):
    x = rng.normal(0, 2, size=(20, 5))
    expected = [_sparsemax_by_hand(list(row)) for row in x]
    np.testing.assert_allclose(activations.sparsemax(x), expected, rtol=1e-12, atol=1e-12)


def test_custom_functions_take_the_place_of_names_in_every_version():
    def gelu(x):
        return 2 * x

    with keras_semantics("2.2.4"), custom_object_scope({"gelu": gelu}):
        assert activations.get("gelu") is gelu


@pytest.mark.parametrize("version", ["2.15.0", "3.15.1"])
def test_activation_layers_stored_as_activations(version):
    leaky = {"class_name": "LeakyReLU", "config": {"name": "lr", "negative_slope": 0.1}}
    if version < "3":
        leaky["config"] = {"name": "lr", "alpha": 0.1}
    relu = {"module": "keras.layers", "class_name": "ReLU", "registered_name": None}
    relu["config"] = {"max_value": 1.0, "negative_slope": 0.2, "threshold": 0.5}
    with keras_semantics(version):
        dense = Dense(3, activation=leaky)
        dense_relu = Dense(3, activation=relu)
    assert isinstance(dense.activation, LeakyReLU)
    assert isinstance(dense_relu.activation, ReLU)
    np.testing.assert_allclose(dense.activation(np.array([-1.0, 2.0], np.float32)), [-0.1, 2.0])
    stored = dense.get_config()["activation"]
    assert stored["class_name"] == "LeakyReLU"
    with keras_semantics(version):
        assert Dense.from_config(dense.get_config()).activation.get_config() == stored["config"]


def test_multi_backend_keras_cannot_store_layers_as_activations():
    with keras_semantics("2.2.4"), pytest.raises(UnknownObjectError, match="LeakyReLU"):
        activations.get({"class_name": "LeakyReLU", "config": {"alpha": 0.1}})


def test_softmax_v2_is_unknown_to_keras3():
    with keras_semantics("3.15.1"), pytest.raises(UnknownObjectError, match="every tf.keras"):
        activations.get("softmax_v2")


def test_every_name_resolves_without_warnings_but_sparsemax():
    for name in activations.available_names():
        if name in ("threshold", "sparsemax"):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert callable(activations.get(name))


def test_custom_layers_named_like_activation_layers_are_not_replaced():
    custom = {
        "module": "my_package",
        "class_name": "LeakyReLU",
        "config": {"alpha": 0.1},
        "registered_name": "my_package>LeakyReLU",
    }
    with keras_semantics("3.15.1"), pytest.raises(UnknownObjectError, match="LeakyReLU"):
        activations.get(custom)


def test_documents_layerserve_wrote_may_name_any_activation():
    # the loader reads layerserve's own documents (backend "layerserve") in this block
    with keras_semantics("2.2.4"), activations.any_version_names():
        assert activations.get("gelu") is activations.gelu
        assert activations.get("hard_sigmoid") is activations.hard_sigmoid
    with keras_semantics("2.2.4"), pytest.raises(UnknownObjectError):
        activations.get("gelu")
