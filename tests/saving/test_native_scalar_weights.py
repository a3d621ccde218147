"""layerserve's own archive keeps every weight's shape, 0-d weights included (Attention's
``scale``): a model saved and loaded again predicts what it predicted before."""

import numpy as np

from layerserve.layers import Attention, Input
from layerserve.models import Model, load_model


def test_scalar_weight_round_trips_through_the_archive(tmp_path):
    query, value = Input((3, 4)), Input((5, 4))
    model = Model([query, value], Attention(use_scale=True)([query, value]))
    scale = model.layers[-1].weights[0]
    assert scale.shape == ()
    model.layers[-1].set_weights([np.asarray(1.7, dtype="float32")])
    rng = np.random.default_rng(0)
    inputs = [
        rng.normal(size=(2, 3, 4)).astype("float32"),
        rng.normal(size=(2, 5, 4)).astype("float32"),
    ]
    path = tmp_path / "attention.lsm"
    model.save(path)
    loaded = load_model(path)
    assert [w.shape for w in loaded.get_weights()] == [()]
    assert float(loaded.get_weights()[0]) == np.float32(1.7)
    np.testing.assert_array_equal(loaded.predict(inputs), model.predict(inputs))
