"""Normalization layers."""

LAYERS: tuple = ()

__all__: list[str] = []
