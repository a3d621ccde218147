"""How an oracle case is written: a model built by real Keras, in either flavour.

A case module (``keras_cases.py`` beside a family's tests) holds ``CASES``, a list of
:class:`Case`. The builder receives the Keras package (``keras`` 3 on JAX, or
``tf_keras``) and its ``layers`` module, so one builder serves both flavours:

    Case("max_pool_same", lambda k, L: k.Sequential(
        [k.Input((7, 7, 3)), L.MaxPooling2D(3, strides=2, padding="same")]))

``tests/support/keras_oracle_writer.py`` runs the builders in a subprocess per flavour,
saves every file format the flavour writes, and records inputs, outputs and masks.
This module imports no Keras, so the test process can read the case table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FLAVOURS = ("keras3", "tf_keras")
# What each flavour writes: Keras 3 saves .keras, legacy .h5 and to_json() + .weights.h5;
# tf_keras saves .h5, its own .keras (the v3 layout) and to_json() + .h5 weights.
FORMATS = {
    "keras3": ("keras", "h5", "json+weights"),
    "tf_keras": ("h5", "keras", "json+weights"),
}
BATCH = 7
VARIABLE_LENGTH = 5  # the size given to unknown (None) non-batch input dimensions

InputMaker = Callable[[np.random.Generator, tuple[int, ...], str], np.ndarray]


def floats(scale: float = 1.0, offset: float = 0.0) -> InputMaker:
    def make(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        return (rng.normal(offset, scale, shape)).astype(dtype)

    return make


def ints(low: int, high: int) -> InputMaker:
    """Integers in ``[low, high)``, cast to the input's dtype (float inputs included)."""

    def make(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        return rng.integers(low, high, shape).astype(dtype)

    return make


def masked_steps(inner: InputMaker | None = None, fraction: float = 0.3) -> InputMaker:
    """Sequences (axis 1) whose randomly chosen timesteps are all zeros, anywhere in the
    sequence (interior, leading, trailing), so that ``Masking()`` masks them."""
    inner = inner or floats()

    def make(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        array = inner(rng, shape, dtype)
        hidden = rng.random(shape[:2]) < fraction
        array[hidden] = 0
        return array

    return make


def no_timesteps() -> InputMaker:
    """Sequences of no timesteps: ``(N, 0, F)`` whatever the input's length."""

    def make(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        return np.zeros((shape[0], 0, *shape[2:]), dtype)

    return make


@dataclass(frozen=True)
class Case:
    """One model to build in real Keras.

    ``inputs``: one maker per model input (None or missing: standard normal floats). ``flavours``:
    the Keras flavours the case exists in. ``formats``: restrict the saved formats (keyed
    by flavour). ``atol``: the tolerance against Keras. ``refused``: the case must fail to
    load in layerserve with a typed error whose message contains this text;
    ``export_refused``: it loads and predicts, but the ONNX export is refused so.
    ``weights``: "random" (default: every weight drawn, so every weight matters; weights
    named ``*variance*`` positive) or "keep" (Keras's own initial values).
    ``dtype_differs``: why the outputs' dtype may differ from Keras's (empty: it must not).
    ``input_refused``: Keras fails when the model is called on the case's inputs;
    layerserve's predict must refuse them with a typed error whose message contains this
    text, and the exported graph must fail on them in onnxruntime with an error naming
    ``onnx_input_refused`` (never abort the process).
    """

    id: str
    build: Callable[[Any, Any], Any]
    inputs: Sequence[InputMaker | None] | None = None
    flavours: tuple[str, ...] = FLAVOURS
    formats: dict[str, tuple[str, ...]] = field(default_factory=dict)
    atol: float = 1e-5
    refused: str | None = None
    export_refused: str | None = None
    weights: str = "random"
    note: str = ""
    dtype_differs: str = ""
    input_refused: str | None = None
    onnx_input_refused: str | None = None

    def formats_for(self, flavour: str) -> tuple[str, ...]:
        return self.formats.get(flavour, FORMATS[flavour])


def params(cases: Sequence[Case]) -> list[tuple[str, str, str]]:
    """``(flavour, case id, format)`` for every file the cases produce."""
    return [
        (flavour, case.id, fmt)
        for case in cases
        for flavour in case.flavours
        for fmt in case.formats_for(flavour)
    ]


def param_id(value: tuple[str, str, str]) -> str:
    return "-".join(value)
