"""Keras 3 mixed-precision policies: the layers keep float32 weights and Keras computes
them in half precision; layerserve computes them in float32, and says so when it loads
the file."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import pytest  # noqa: E402

from layerserve.export import to_onnx  # noqa: E402
from layerserve.models import load_model  # noqa: E402


def mlp(policy: str | None) -> keras.Model:
    dense = {"dtype": policy} if policy else {}
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(5, **dense), keras.layers.Dense(3, "tanh")]
    )


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_a_mixed_precision_layer_is_computed_in_float32_with_a_warning(tmp_path: Path, policy):
    rng = np.random.default_rng(0)
    mixed, plain = mlp(policy), mlp(None)
    weights = [rng.normal(0, 0.5, w.shape).astype("float32") for w in mixed.get_weights()]
    mixed.set_weights(weights)
    plain.set_weights(weights)
    mixed.save(tmp_path / "mixed.keras")
    x = rng.normal(size=(7, 4)).astype("float32")
    with pytest.warns(UserWarning, match=f"'{policy}' computes in {policy[6:]}.*float32"):
        model = load_model(tmp_path / "mixed.keras")
    expected = plain.predict(x, verbose=0)  # Keras in float32, the same weights
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-6)
    to_onnx(model, tmp_path / "mixed.onnx")
    session = ort.InferenceSession(tmp_path / "mixed.onnx", providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # and Keras's own half-precision numbers are further off than that
    assert np.abs(mixed.predict(x, verbose=0) - expected).max() > 1e-5
