"""StackedRNNCells: cells run one after the other within each timestep."""

from __future__ import annotations

from typing import Any

from layerserve.errors import ConfigError, received
from layerserve.layers.base import Layer, Variable
from layerserve.layers.rnn.base_rnn import Step
from layerserve.layers.rnn.cells import CELLS, RecurrentCell
from layerserve.layers.rnn.nested import build_nested, nested_config


def build_cell(identifier: Any, owner: str) -> RecurrentCell | StackedRNNCells:
    """A built-in cell (or a stack of them) from a cell, a config, or a list of them."""
    if isinstance(identifier, (list, tuple)):
        return StackedRNNCells(list(identifier))
    cell = build_nested(identifier, "cell", owner)
    if not isinstance(cell, (*CELLS, StackedRNNCells)):
        names = ", ".join(c.__name__ for c in (*CELLS, StackedRNNCells))
        raise ConfigError(
            f"{owner} runs the built-in cells only: expected `cell` to be one of {names}. "
            f"Received: cell={type(cell).__name__} ({cell.name!r})"
        )
    return cell


class StackedRNNCells(Layer):
    """Cells applied in sequence at every timestep: cell k+1's input is cell k's output.

    Args:
        cells: a list of cells (LSTMCell, GRUCell, SimpleRNNCell) or their configs.

    The states are the cells' states, cell by cell; the output is the last cell's.

    Input shape: ``(batch, features)`` per step.

    Output shape: ``(batch, units of the last cell)``.
    """

    def __init__(self, cells: list[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(cells, (list, tuple)) or not cells:
            raise ConfigError(
                f"StackedRNNCells {self.name} expects a non-empty list of cells. "
                + received("cells", cells)
            )
        built = [build_cell(c, f"StackedRNNCells {self.name}") for c in cells]
        nested = [c.name for c in built if not isinstance(c, RecurrentCell)]
        if nested:
            raise ConfigError(
                f"StackedRNNCells {self.name} expects cells, not stacks of cells. "
                f"Received: {nested}"
            )
        self.cells: list[RecurrentCell] = built

    @property
    def state_size(self) -> list[int]:
        return [size for cell in self.cells for size in cell.state_size]

    @property
    def output_size(self) -> int:
        return self.cells[-1].output_size

    def _all_variables(self) -> list[Variable]:
        return [v for cell in self.cells for v in cell._all_variables()]

    def build(self, input_shape: Any) -> None:
        features = tuple(input_shape)[-1]
        for cell in self.cells:
            cell._maybe_build((None, features))
            features = cell.output_size

    def step(self) -> Step:
        steps = [(cell.step(), len(cell.state_size)) for cell in self.cells]

        def stacked(x_t: Any, states: list[Any]) -> tuple[Any, list[Any]]:
            new_states: list[Any] = []
            start = 0
            for step, count in steps:
                x_t, own = step(x_t, states[start : start + count])
                new_states += own
                start += count
            return x_t, new_states

        return stacked

    def compute_output_shape(self, input_shape: Any) -> Any:
        batch = tuple(input_shape[0] if isinstance(input_shape, list) else input_shape)[0]
        return [(batch, self.output_size), *[(batch, size) for size in self.state_size]]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "cells": [nested_config(c) for c in self.cells]}
