"""Whether a served graph's rows depend on one another, found by running it.

The dynamic batcher may only merge requests when each row's outputs depend on that row
alone. The exporter records the layers it knows couple rows (tf.keras's masked
GroupNormalization); this probe covers every other graph the service loads (a Lambda that
reduces over the batch axis, an ONNX file exported elsewhere): at load, a few rows run
together and each alone, and the outputs must agree.

The verdict has three outcomes. *Independent*: the rows agreed. *Coupled*: they did not,
or the batched run failed where each row alone ran (its outcome depends on what shares
the batch). *Unknown*: the probe could not run (the rows alone failed with random values
and with small whole numbers, it ran out of time, or the inputs are too large to probe).
Only *independent* lets the batcher merge: a merge that changed the numbers would be
silent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PROBE_ROWS = 3
# The whole probe's time and input size: beyond them the verdict is unknown.
PROBE_SECONDS = 30.0
PROBE_MAX_BYTES = 64 << 20
# Rows run together and alone differ in float rounding only (blocked matrix products);
# coupled rows differ by the size of the values. Half precision, and CUDA (TF32 matrix
# products, a kernel chosen per batch size), round more.
RTOL, ATOL = 1e-3, 1e-4
LOOSE_RTOL, LOOSE_ATOL = 2e-2, 2e-3
# Share of timesteps zeroed in sequence inputs, so that Masking layers mask some.
ZEROED_STEPS = 0.3

Run = Callable[[dict[str, np.ndarray], float], Sequence[Any]]


@dataclass(frozen=True)
class Verdict:
    """``coupled`` True, False, or None for unknown; ``reason`` says what was seen."""

    coupled: bool | None
    reason: str

    @property
    def merges(self) -> bool:
        return self.coupled is False


def probe(
    run: Run,
    specs: Sequence[Any],
    shapes: dict[str, list[int]],
    index_ranges: dict[str, tuple[int, int]],
    row_bytes: int,
    loose: bool = False,
) -> Verdict:
    """Run ``PROBE_ROWS`` rows together and each alone through ``run(feeds, seconds)``
    (which raises once ``seconds`` pass); first random rows, then, if the graph refuses
    those, rows of small whole numbers (0, 1, 2: valid indices for most lookups).
    ``row_bytes``: one row's inputs (the warm-up's count). ``loose``: half precision or
    CUDA, compared with looser tolerances."""
    size = PROBE_ROWS * row_bytes
    if size > PROBE_MAX_BYTES:
        return Verdict(None, f"{PROBE_ROWS} rows take {size} bytes, over {PROBE_MAX_BYTES}")
    deadline = time.monotonic() + PROBE_SECONDS
    refused = ""
    for feeds in (random_rows(specs, shapes, index_ranges), counting_rows(specs, shapes)):
        try:
            return compare(run, feeds, deadline, loose)
        except _RowsRefused as exc:
            refused = str(exc)
        except Exception as exc:  # noqa: BLE001 - whatever stops the probe leaves it unknown
            return Verdict(None, f"the probe stopped: {type(exc).__name__}: {exc}")
    return Verdict(None, f"the graph refused the probe's rows run alone: {refused}")


def random_rows(
    specs: Sequence[Any], shapes: dict[str, list[int]], index_ranges: dict[str, tuple[int, int]]
) -> dict[str, np.ndarray]:
    """Random rows per input, of the sizes ``shapes`` gives (the warm-up's): indices within
    the recorded range (whatever the input's dtype: tf.keras feeds Embedding floats), small
    integers, booleans, short strings, or floats with some timesteps all zeros."""
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in specs:
        shape = [PROBE_ROWS, *shapes[spec.name][1:]]
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "O":
            words = rng.integers(0, 5, shape)
            array = np.array([f"w{k}" for k in words.ravel()], dtype=object).reshape(shape)
        elif dtype.kind == "b":
            array = rng.random(shape) < 0.5
        elif spec.name in index_ranges or dtype.kind in "iu":
            low, high = index_ranges.get(spec.name, (0, 2))
            low = max(low, 0)
            array = rng.integers(low, max(high, low + 1), shape).astype(dtype)
        else:
            array = rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
            if array.ndim >= 3:
                array[rng.random(shape[:2]) < ZEROED_STEPS] = 0
        feeds[spec.name] = array
    return feeds


def counting_rows(specs: Sequence[Any], shapes: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """Row ``r`` holds ``r`` everywhere (strings: "r"): rows that differ, in values most
    graphs accept."""
    feeds = {}
    for spec in specs:
        shape = [PROBE_ROWS, *shapes[spec.name][1:]]
        dtype = np.dtype(spec.dtype)
        values = np.arange(PROBE_ROWS).reshape(-1, *[1] * (len(shape) - 1))
        if dtype.kind == "O":
            values = values.astype(str).astype(object)
        feeds[spec.name] = np.broadcast_to(values, shape).astype(dtype)
    return feeds


class _RowsRefused(Exception):
    """The rows run alone failed: these values tell nothing about the rows."""


def compare(run: Run, feeds: dict[str, np.ndarray], deadline: float, loose: bool) -> Verdict:
    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"past {PROBE_SECONDS:g} s")
        return left

    alone = []
    for row in range(PROBE_ROWS):
        try:
            alone.append(run({n: a[row : row + 1] for n, a in feeds.items()}, remaining()))
        except TimeoutError:
            raise
        except Exception as exc:  # noqa: BLE001 - any refusal of these values
            raise _RowsRefused(f"{type(exc).__name__}: {exc}") from exc
    try:
        together = run(feeds, remaining())
    except TimeoutError:
        raise
    except Exception as exc:  # noqa: BLE001 - each row ran alone: the batch made it fail
        return Verdict(True, f"{PROBE_ROWS} rows together failed where each alone ran: {exc}")
    for index, merged in enumerate(together):
        differs = _difference(index, np.asarray(merged), alone, loose)
        if differs:
            return Verdict(True, f"output {index}: {differs}")
    return Verdict(False, f"{PROBE_ROWS} rows together and alone agree")


def _difference(index: int, merged: np.ndarray, alone: list[Sequence[Any]], loose: bool) -> str:
    """What differs between output ``index`` of the rows together and alone ("" if none)."""
    if merged.ndim == 0 or merged.shape[0] != PROBE_ROWS:
        return f"run together it has shape {merged.shape}, no axis of {PROBE_ROWS} rows first"
    for row in range(PROBE_ROWS):
        single = np.asarray(alone[row][index])
        if single.shape != (1, *merged.shape[1:]):
            return f"row {row} alone has shape {single.shape}, together {merged.shape[1:]}"
        if not _agree(np.asarray(merged[row]), np.asarray(single[0]), loose):
            return f"row {row} differs run together and alone"
    return ""


def _agree(merged: np.ndarray, single: np.ndarray, loose: bool) -> bool:
    if merged.dtype.kind in "fc":
        half = merged.dtype.itemsize <= 2
        rtol, atol = (LOOSE_RTOL, LOOSE_ATOL) if loose or half else (RTOL, ATOL)
        scale = max(1.0, float(np.nan_to_num(np.abs(single), posinf=0, neginf=0).max(initial=0)))
        return bool(np.allclose(merged, single, rtol=rtol, atol=atol * scale, equal_nan=True))
    return bool(np.array_equal(merged, single))
