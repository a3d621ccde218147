"""The sequence zoo (recurrent layers, wrappers, attention) in every format Keras 3 and
tf_keras write: loaded by layerserve, its predictions, masks and ONNX export equal
Keras's."""

from pathlib import Path

import pytest
from keras_oracle import oracle_params

KERAS_CASES = Path(__file__).with_name("sequence_cases.py")


@pytest.mark.parametrize(("flavour", "case_id", "fmt"), oracle_params(KERAS_CASES))
def test_sequence_zoo_model_matches_keras(keras_oracle, flavour, case_id, fmt):
    keras_oracle.check(KERAS_CASES, flavour, case_id, fmt)
