"""Layers held by other layers: the wrappers' ``layer``/``backward_layer`` and RNN ``cell``.

A nested layer arrives as a layer object (Python API) or as ``{"class_name", "config"}``
(a file, already normalised by ``layerserve.saving.keras_json``). It is built with the
same class lookup as top-level layers, under the Keras version being loaded, so names
whose meaning changed between versions are read as the file meant them.
"""

from __future__ import annotations

import re
from typing import Any

from layerserve.errors import ConfigError, received
from layerserve.layers.base import Layer


def build_nested(identifier: Any, argument: str, owner: str) -> Layer:
    """A layer object from ``identifier`` (a Layer, or a ``{class_name, config}`` dict)."""
    if isinstance(identifier, Layer):
        return identifier
    if isinstance(identifier, dict) and "class_name" in identifier:
        # Imported here: the model loaders import the layer families.
        from layerserve.models.rebuild import deserialize_layer

        return deserialize_layer(identifier)
    raise ConfigError(
        f"{owner} expects `{argument}` to be a layer or a layer config "
        f"{{'class_name', 'config'}}. " + received(argument, identifier)
    )


def nested_config(layer: Layer) -> dict[str, Any]:
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def copy_layer(layer: Layer, **overrides: Any) -> Layer:
    """A fresh layer of the same class and config, with ``overrides`` applied."""
    config = {**layer.get_config(), **overrides}
    return type(layer).from_config(config)


def keras3_entries_under(prefix: str, layer: Layer) -> tuple[str, ...]:
    """``layer``'s ordered Keras 3 weight entries as paths under ``prefix``, or just
    ``prefix`` when its own sub-objects sort in weight order."""
    inner = layer.keras3_weight_entries
    return tuple(f"{prefix}/{path}" for path in inner) if inner else (prefix,)


def keras3_keys(layers: list[Layer]) -> list[str]:
    """Keras 3 stores a model's layers, and the objects of a list attribute (a stack's
    ``cells``), under their snake-cased class name, counted in order (``dense``,
    ``dense_1``, ...), not under their names."""
    used: dict[str, int] = {}
    keys = []
    for layer in layers:
        class_name = type(layer).__name__
        base = _keras3_snake("Functional" if class_name == "Model" else class_name)
        if base in used:
            used[base] += 1
            keys.append(f"{base}_{used[base]}")
        else:
            used[base] = 0
            keys.append(base)
    return keys


def _keras3_snake(name: str) -> str:
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
