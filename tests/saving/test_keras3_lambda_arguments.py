"""A Keras 3 Lambda whose `arguments` hold an array: Keras 3 stores the array as a
``__numpy__`` object; layerserve decodes it and computes what Keras computes."""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras  # noqa: E402 - the backend must be chosen first

from layerserve.models import load_model  # noqa: E402


def test_keras3_lambda_with_array_arguments_loads_and_matches(tmp_path):
    shift = np.array([1.0, -2.0, 0.5], dtype="float32")
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Lambda(lambda v, shift: v * 2.0 + shift, arguments={"shift": shift}),
        ]
    )
    path = tmp_path / "lambda_arguments.keras"
    model.save(path)
    x = np.random.default_rng(0).standard_normal((4, 3)).astype("float32")
    loaded = load_model(path, safe_mode=False)
    got = loaded.predict(x)
    np.testing.assert_allclose(got, x * 2.0 + shift, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    assert got.dtype == np.float32
