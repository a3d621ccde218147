"""``model.summary()``: the Keras 2.2 table of layers, output shapes and parameters."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class SummaryRow:
    name: str
    class_name: str
    output_shape: Any
    params: int
    connected_to: list[str]


def summary_rows(model: Any) -> list[SummaryRow]:
    """One row per layer of ``model``, with the output shape of its node in this model."""
    node_ids = {id(node) for node in model._nodes}
    rows = []
    for layer in model.layers:
        nodes = [n for n in layer.inbound_nodes if id(n) in node_ids]
        shapes = [[t.shape for t in n.outputs] for n in nodes]
        if not shapes:
            shape: Any = "multiple"
        elif any(s != shapes[0] for s in shapes):
            shape = "multiple"
        else:
            shape = shapes[0][0] if len(shapes[0]) == 1 else shapes[0]
        connections = []
        for node in nodes:
            for tensor in node.inputs:
                parent, node_index, tensor_index = tensor.history
                kept = [n for n in parent.inbound_nodes if id(n) in node_ids]
                position = next(
                    i for i, n in enumerate(kept) if n is parent.inbound_nodes[node_index]
                )
                connections.append(f"{parent.name}[{position}][{tensor_index}]")
        params = layer.count_params() if layer.built else 0
        rows.append(SummaryRow(layer.name, type(layer).__name__, shape, params, connections))
    return rows


def param_totals(model: Any) -> tuple[int, int]:
    """Keras's trainable and non-trainable parameter counts: the weights, and what Keras
    counts beyond the weights held here (``Layer.params_beyond_weights``), on the side of
    the top-level layer that holds it."""
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    non_trainable = sum(int(np.prod(v.shape)) for v in model.non_trainable_weights)
    for layer in model.layers:
        if layer.trainable:
            trainable += layer.params_beyond_weights
        else:
            non_trainable += layer.params_beyond_weights
    return trainable, non_trainable


def is_sequential_like(model: Any) -> bool:
    if type(model).__name__ == "Sequential":
        return True
    for node in model._nodes:
        if len(node.inputs) > 1:
            return False
    per_layer: dict[int, int] = {}
    for node in model._nodes:
        per_layer[id(node.layer)] = per_layer.get(id(node.layer), 0) + 1
    consumers: dict[int, int] = {}
    for node in model._nodes:
        for tensor in node.inputs:
            consumers[id(tensor)] = consumers.get(id(tensor), 0) + 1
    return (
        all(c == 1 for c in per_layer.values())
        and all(c <= 1 for c in consumers.values())
        and len(model.outputs) == 1
        and len(model.inputs) == 1
    )


def format_shape(shape: Any) -> str:
    if isinstance(shape, str):
        return shape
    if isinstance(shape, list):
        return "[" + ", ".join(format_shape(s) for s in shape) + "]"
    return (
        "("
        + ", ".join("None" if d is None else str(d) for d in shape)
        + (",)" if len(shape) == 1 else ")")
    )


def summary_text(
    model: Any, line_length: int | None = None, positions: Sequence[float] | None = None
) -> str:
    sequential_like = is_sequential_like(model)
    if sequential_like:
        line_length = line_length or 65
        positions = list(positions or [0.45, 0.85, 1.0])
        header = ["Layer (type)", "Output Shape", "Param #"]
    else:
        line_length = line_length or 98
        positions = list(positions or [0.33, 0.55, 0.67, 1.0])
        header = ["Layer (type)", "Output Shape", "Param #", "Connected to"]
    if positions[-1] <= 1:
        positions = [int(line_length * p) for p in positions]
    lines = [
        f'Model: "{model.name}"',
        "_" * line_length,
        _row(header, positions),
        "=" * line_length,
    ]
    rows = summary_rows(model)
    for index, row in enumerate(rows):
        fields = [f"{row.name} ({row.class_name})", format_shape(row.output_shape), row.params]
        if not sequential_like:
            fields.append(row.connected_to[0] if row.connected_to else "")
        lines.append(_row(fields, positions))
        if not sequential_like:
            for extra in row.connected_to[1:]:
                lines.append(_row(["", "", "", extra], positions))
        lines.append("=" * line_length if index == len(rows) - 1 else "_" * line_length)
    trainable, non_trainable = param_totals(model)
    lines += [
        f"Total params: {trainable + non_trainable:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {non_trainable:,}",
        "_" * line_length,
    ]
    return "\n".join(lines)


def _row(fields: Sequence[Any], positions: Sequence[int]) -> str:
    line = ""
    for index, field in enumerate(fields):
        if index > 0:
            line = line[:-1] + " "
        line += str(field)
        line = line[: positions[index]]
        line += " " * (positions[index] - len(line))
    return line


def print_summary(
    model: Any,
    line_length: int | None = None,
    positions: Sequence[float] | None = None,
    print_fn: Callable[[str], Any] | None = None,
) -> None:
    text = summary_text(model, line_length, positions)
    if print_fn is None:
        sys.stdout.write(text + "\n")
        return
    for line in text.split("\n"):
        print_fn(line)


__all__ = [
    "SummaryRow",
    "format_shape",
    "print_summary",
    "summary_rows",
    "summary_text",
]
