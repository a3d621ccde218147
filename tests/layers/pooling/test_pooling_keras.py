"""Pooling layers in files written by Keras 3 and tf_keras."""

from pathlib import Path

import pytest
from keras_oracle import oracle_params

KERAS_CASES = Path(__file__).with_name("keras_cases.py")
# Keras 3 files: pools that drop a mask warn, as Keras 3 does; Dense(exponential) is
# meant to overflow at masked steps.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*does not support masking:UserWarning"),
    pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning"),
]


@pytest.mark.parametrize(("flavour", "case_id", "fmt"), oracle_params(KERAS_CASES))
def test_pooling_matches_keras(keras_oracle, flavour, case_id, fmt):
    keras_oracle.check(KERAS_CASES, flavour, case_id, fmt)
