"""Embedding, Identity and EinsumDense in files written by Keras 3 and tf_keras."""

from pathlib import Path

import numpy as np
import pytest
from keras_oracle import load_file, oracle_params

from layerserve.errors import ShapeError
from layerserve.export import to_onnx
from layerserve.export.parity import session

KERAS_CASES = Path(__file__).with_name("keras_cases.py")


@pytest.mark.parametrize(("flavour", "case_id", "fmt"), oracle_params(KERAS_CASES))
def test_core_layer_matches_keras(keras_oracle, flavour, case_id, fmt):
    keras_oracle.check(KERAS_CASES, flavour, case_id, fmt)


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_out_of_range_indices_follow_the_files_keras(keras_oracle, flavour):
    """Keras 3 counts -1 from the end (its TF and NumPy backends; JAX too), tf.keras
    raises; an index >= input_dim raises in both, in the reference and in onnxruntime."""
    rows = np.array([[1, -1, 0, 2, 3, -12]], dtype="int32")
    directory = keras_oracle.ensure(KERAS_CASES, flavour) / "embedding_mask_zero_int"
    model = load_file(directory, flavour, "h5")
    table = model.layers[-1].get_weights()[0]
    runner = session(to_onnx(model))
    if flavour == "keras3":
        expected = table[[1, 11, 0, 2, 3, 0]][np.newaxis]
        np.testing.assert_array_equal(model.predict(rows), expected)
        np.testing.assert_array_equal(
            runner.run(None, {runner.get_inputs()[0].name: rows})[0], expected
        )
    else:
        with pytest.raises(
            ShapeError, match=r"outside \[0, 12\): the input holds values from -12 to 3 \(Keras 2"
        ):
            model.predict(rows)
        with pytest.raises(Exception, match="out of data bounds"):
            runner.run(None, {runner.get_inputs()[0].name: rows})
    too_large = np.array([[12, 0, 0, 0, 0, 0]], dtype="int32")
    with pytest.raises(ShapeError, match=r"values from 0 to 12"):
        model.predict(too_large)
    with pytest.raises(Exception, match="out of data bounds"):
        runner.run(None, {runner.get_inputs()[0].name: too_large})
