"""A key layerserve does not know, anywhere in a model's config, is refused naming it:
never ignored (a key Keras would act on, read by nothing here, would change the numbers
silently). The document, a model's own config (nested ones too), a layer's entry, an
operation's entry and a dtype policy; a layer's own config is refused by its class."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from layerserve.errors import LayerserveError
from layerserve.layers import Dense, Input
from layerserve.models import Model, Sequential, model_from_json


def functional() -> dict[str, Any]:
    x = Input((3,), name="x")
    return json.loads(Model(x, Dense(2, name="d")(x), name="m").to_json())


def nested() -> dict[str, Any]:
    inner = Sequential([Dense(2, input_shape=(3,), name="d")], name="inner")
    return json.loads(Sequential([inner], name="outer").to_json())


def with_policy() -> dict[str, Any]:
    document = functional()
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}}
    document["config"]["layers"][1]["config"]["dtype"] = policy
    return document


PLACES: dict[str, tuple[Callable[[], dict], Callable[[dict], dict]]] = {
    "document": (functional, lambda d: d),
    "model config": (functional, lambda d: d["config"]),
    "layer entry": (functional, lambda d: d["config"]["layers"][1]),
    "nested model config": (nested, lambda d: d["config"]["layers"][0]["config"]),
    "nested layer entry": (nested, lambda d: d["config"]["layers"][0]["config"]["layers"][0]),
    "dtype policy": (with_policy, lambda d: d["config"]["layers"][1]["config"]["dtype"]),
    "dtype policy config": (
        with_policy,
        lambda d: d["config"]["layers"][1]["config"]["dtype"]["config"],
    ),
}


@pytest.mark.parametrize("place", list(PLACES))
def test_an_unknown_key_is_refused_naming_it(place):
    build, where = PLACES[place]
    document = build()
    model = model_from_json(json.dumps(document))  # as it is, it loads
    assert model.predict(np.ones((1, 3), np.float32)).shape == (1, 2)
    changed = copy.deepcopy(document)
    where(changed)["flux_capacitor"] = True
    with pytest.raises(LayerserveError, match="flux_capacitor"):
        model_from_json(json.dumps(changed))


def test_a_quantized_dtype_policy_is_refused():
    document = with_policy()
    policy = document["config"]["layers"][1]["config"]["dtype"]
    policy.update(class_name="QuantizedDTypePolicy", config={"name": "int8_from_float32"})
    with pytest.raises(LayerserveError, match="QuantizedDTypePolicy"):
        model_from_json(json.dumps(document))
