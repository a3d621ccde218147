"""Lambda layers that call a function by name: resolved only among Keras's backend
functions or the user's custom objects, never guessed from another module."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conversion_files import keras_named_lambda, save_keras
from typer.testing import CliRunner

from layerserve import backend as K
from layerserve.cli import app
from layerserve.errors import UnknownFunctionError
from layerserve.layers.core.function_code import find_function
from layerserve.models import load_model, model_from_json


@pytest.mark.parametrize("module", [None, "keras.backend", "keras.src.ops.nn", "tf_keras.backend"])
def test_keras_backend_names_resolve_to_the_backend(module):
    assert find_function("relu", "function", module) is K.relu


@pytest.mark.parametrize("module", ["__main__", "builtins", "numpy", "tensorflow.math", "mine"])
def test_names_from_other_modules_are_never_guessed(module):
    with pytest.raises(UnknownFunctionError, match=f"'relu' from module '{module}'") as raised:
        find_function("relu", "function", module)
    assert raised.value.function == "relu" and raised.value.module == module


def tf_keras_sequential(layer: dict) -> dict:
    """What tf.keras's ``to_json()`` writes for Sequential([Input((3,)), layer])."""
    return {
        "class_name": "Sequential",
        "keras_version": "2.15.0",
        "backend": "tensorflow",
        "config": {
            "name": "s",
            "layers": [
                {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 3]}},
                layer,
            ],
        },
    }


def test_tf_keras_lambda_keys_are_read(tmp_path: Path):
    """tf.keras writes `module` and `output_shape_module` beside a by-name function."""
    layer = {
        "class_name": "Lambda",
        "config": {
            "name": "l",
            "function": "square",
            "function_type": "function",
            "module": "keras.backend",
            "output_shape": [3],
            "output_shape_type": "raw",
            "output_shape_module": None,
            "arguments": {},
        },
    }
    document = tf_keras_sequential(layer)
    model = model_from_json(json.dumps(document))
    x = np.arange(6, dtype="float32").reshape(2, 3)
    np.testing.assert_array_equal(model.predict(x), x * x)
    layer["config"]["module"] = "__main__"
    with pytest.raises(UnknownFunctionError, match="'square' from module '__main__'"):
        model_from_json(json.dumps(document))


def test_tf_keras_lambda_mask_module_is_read():
    """tf.keras writes `mask_module` beside a by-name mask function too."""
    layer = {
        "class_name": "Lambda",
        "config": {
            "name": "l",
            "function": "abs",
            "function_type": "function",
            "module": "tf_keras.backend",
            "output_shape": None,
            "output_shape_type": "raw",
            "output_shape_module": None,
            "mask": "not_equal",
            "mask_type": "function",
            "mask_module": "tf_keras.backend",
            "arguments": {},
        },
    }
    document = tf_keras_sequential(layer)
    lambda_layer = model_from_json(json.dumps(document)).layers[-1]
    assert lambda_layer.mask is K.not_equal
    x, mask = np.array([[1.0, -2.0, 3.0]]), np.array([[1.0, 2.0, 0.0]])
    np.testing.assert_array_equal(lambda_layer.compute_mask(x, mask), [[False, True, True]])
    layer["config"]["mask_module"] = "__main__"
    with pytest.raises(UnknownFunctionError, match="'not_equal' from module '__main__'"):
        model_from_json(json.dumps(document))


def test_export_command_imports_the_named_function(tmp_path: Path):
    path = save_keras(keras_named_lambda(), tmp_path / "named.keras")
    with pytest.raises(UnknownFunctionError, match="custom_objects"):
        load_model(path)
    target = tmp_path / "named.onnx"
    runner = CliRunner()
    refused = runner.invoke(app, ["export", str(path), "-o", str(target)])
    assert refused.exit_code == 2 and "'double'" in refused.output
    result = runner.invoke(
        app,
        ["export", str(path), "-o", str(target), "--function", "double=conversion_files:double"],
    )
    assert result.exit_code == 0, result.output
    assert target.exists()
    bad = runner.invoke(app, ["export", str(path), "-o", str(target), "--function", "double"])
    assert bad.exit_code != 0 and "NAME=module:attribute" in bad.output
