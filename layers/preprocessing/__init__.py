"""Preprocessing layers."""

LAYERS: tuple = ()

__all__: list[str] = []
