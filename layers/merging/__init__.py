"""Merging layers."""

LAYERS: tuple = ()

__all__: list[str] = []
