"""What keeps an empty axis from onnxruntime's recurrent ops, which abort the whole
process (SIGABRT) on one: an LSTM, GRU or RNN op given zero rows, a GRU zero timesteps.
layerserve's exporter guards its own graphs (an ``If`` on the batch size, a check of the
timesteps), but an uploaded graph may hold such an op unguarded, so every graph that holds
one is served so: an empty batch of a batched model runs on one row of zeros (its outputs
cut back to zero rows), and any other empty axis is refused before the graph runs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import onnx

from layerserve.service.errors import ModelLoadError, ModelRefusedInput

RECURRENT_OPS = frozenset({"LSTM", "GRU", "RNN"})


def has_recurrent_op(path: Path) -> bool:
    """Whether the graph holds an LSTM, GRU or RNN op anywhere, subgraphs included."""
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - onnxruntime loaded it; assume the worst
        return True

    def search(graph: onnx.GraphProto) -> bool:
        for node in graph.node:
            if node.op_type in RECURRENT_OPS:
                return True
            for attribute in node.attribute:
                subgraphs = [attribute.g] if attribute.HasField("g") else list(attribute.graphs)
                if any(search(sub) for sub in subgraphs):
                    return True
        return False

    return search(proto.graph)


def _refusal(model: str, feed: str, shape: tuple[int, ...], batched: bool, what: str) -> str:
    past = " past the batch" if batched else ""
    return (
        f"model '{model}' holds a recurrent op (LSTM, GRU or RNN), which onnxruntime cannot "
        f"run on an empty axis. Expected every dimension of input '{feed}'{past} to be at "
        f"least 1. {what}: shape {list(shape)}"
    )


def refuse_empty_axes(model: str, feeds: Mapping[str, np.ndarray], batched: bool) -> None:
    """Refuse an empty axis other than a batched model's batch. Which axis an input's
    empty one is, in a graph not exported here, is not known, so any is refused (Keras
    refuses zero timesteps for every recurrent layer)."""
    for name, value in feeds.items():
        if 0 in (value.shape[1:] if batched else value.shape):
            raise ModelRefusedInput(_refusal(model, name, value.shape, batched, "Received"))


def refuse_declared_empty_axes(
    model: str, inputs: Iterable[tuple[str, tuple[int, ...]]], batched: bool
) -> None:
    """Refuse to load a model whose input is declared with such an axis: its warm-up run
    would abort the process."""
    for name, shape in inputs:
        if 0 in (shape[1:] if batched else shape):
            raise ModelLoadError(_refusal(model, name, shape, batched, "Declared"))


def one_row(array: np.ndarray) -> np.ndarray:
    """One row of zeros (empty strings) shaped like ``array``'s rows."""
    if array.dtype.kind in "OU":
        return np.full((1, *array.shape[1:]), "", dtype=array.dtype)
    return np.zeros((1, *array.shape[1:]), dtype=array.dtype)
