"""A layer called with its first argument by keyword (``Dense(3)(inputs=x)``,
``mha(query=q, value=v)``): Keras 3 records no positional argument then, only keyword
arguments; layerserve takes the layer's first call argument from them."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras  # noqa: E402 - the backend must be chosen first

from layerserve.errors import ModelFormatError  # noqa: E402
from layerserve.models import model_from_json  # noqa: E402


def _keyword_model():
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    dense = keras.layers.Dense(3, name="dense")(inputs=a)
    joined = keras.layers.Concatenate(name="joined")(inputs=[dense, b])
    return keras.Model([a, b], keras.layers.Dense(2, name="head")(inputs=joined))


def _calls(document, name):
    return next(e for e in document["config"]["layers"] if e["name"] == name)["inbound_nodes"]


@pytest.mark.parametrize("batch", [0, 1, 7, 64])
def test_first_argument_by_keyword_matches_keras(batch):
    model = _keyword_model()
    document = json.loads(model.to_json())
    assert _calls(document, "dense")[0]["args"] == []  # the case this covers
    loaded = model_from_json(model.to_json())
    loaded.set_weights(model.get_weights())
    rng = np.random.default_rng(batch)
    x = [rng.standard_normal((batch, 4)).astype("float32") for _ in range(2)]
    # model(x), not model.predict: Keras's predict fails on 0 rows
    np.testing.assert_allclose(loaded.predict(x), np.asarray(model(x)), rtol=1e-5, atol=1e-5)


def test_call_without_its_first_argument_is_refused():
    document = json.loads(_keyword_model().to_json())
    node = _calls(document, "dense")[0]
    node["kwargs"]["x"] = node["kwargs"].pop("inputs")
    with pytest.raises(ModelFormatError, match="first call argument `inputs`"):
        model_from_json(json.dumps(document))
