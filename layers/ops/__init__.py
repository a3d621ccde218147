"""Keras 3 operations recorded in functional model configs (the ops that compute masks)."""

LAYERS: tuple = ()

__all__: list[str] = []
