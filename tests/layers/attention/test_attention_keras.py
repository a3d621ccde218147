"""Attention layers in files written by Keras 3 and tf_keras."""

from pathlib import Path

import pytest
from keras_oracle import oracle_params

KERAS_CASES = Path(__file__).with_name("keras_cases.py")


@pytest.mark.parametrize(("flavour", "case_id", "fmt"), oracle_params(KERAS_CASES))
def test_attention_matches_keras(keras_oracle, flavour, case_id, fmt):
    keras_oracle.check(KERAS_CASES, flavour, case_id, fmt)
