"""Normalization layers in files written by Keras 3 and tf_keras."""

from pathlib import Path

import numpy as np
import pytest
from keras_oracle import (
    assert_export_matches,
    assert_reference_matches,
    load_file,
    oracle_params,
)
from oracle_case import BATCH

KERAS_CASES = Path(__file__).with_name("keras_cases.py")
# RMSNormalization drops a mask with a warning, as Keras 3 does (case rms_drops_mask).
pytestmark = pytest.mark.filterwarnings("ignore:Layer .* does not support masking:UserWarning")
# tf.keras's GroupNormalization broadcasts an (N, T) mask onto its (N, T, C) input from
# the right, so each sample's moments depend on the other samples' masks: checked below
# on Keras's whole batch only (the generic check also predicts a 1-row batch).
BATCH_COUPLED = {("tf_keras", "gn_masked")}
PARAMS = [p for p in oracle_params(KERAS_CASES) if tuple(p.values[:2]) not in BATCH_COUPLED]


@pytest.mark.parametrize(("flavour", "case_id", "fmt"), PARAMS)
def test_normalization_layer_matches_keras(keras_oracle, flavour, case_id, fmt):
    keras_oracle.check(KERAS_CASES, flavour, case_id, fmt)


@pytest.mark.parametrize("fmt", ["h5", "keras", "json+weights"])
def test_tf_keras_group_normalization_weights_moments_by_the_batch_coupled_mask(keras_oracle, fmt):
    case_dir = keras_oracle.ensure(KERAS_CASES, "tf_keras") / "gn_masked"
    model = load_file(case_dir, "tf_keras", fmt)
    data = np.load(case_dir / "data.npz")
    inputs, outputs, masks = [data["x0"]], [data["y0"]], [data["m0"]]
    assert_reference_matches(model, inputs, outputs, masks, BATCH, atol=1e-5)
    assert_export_matches(model, inputs, outputs, masks, atol=1e-5)
    # One sample alone gets other moments: the mask is what couples the batch.
    alone = model.predict(inputs[0][:1])
    assert np.max(np.abs(alone - outputs[0][:1])) > 1e-2
