"""Whether a served graph's rows depend on one another, found by running it.

The dynamic batcher may only merge requests when each row's outputs depend on that row
alone. The exporter records the layers it knows couple rows (tf.keras's masked
GroupNormalization); this probe covers every other graph the service loads (a Lambda that
reduces over the batch axis, an ONNX file exported elsewhere): at load, a few random rows
run together and each alone, and the outputs must agree. A batched run that fails where the
single rows run counts as coupled too: its outcome depends on what shares the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

PROBE_ROWS = 3
# Rows run together and alone differ in float rounding only (blocked matrix products);
# coupled rows differ by the size of the values.
RTOL = 1e-3
ATOL = 1e-4
# Share of timesteps zeroed in sequence inputs, so that Masking layers mask some.
ZEROED_STEPS = 0.3

Run = Callable[[dict[str, np.ndarray]], Sequence[Any]]


def probe_inputs(
    specs: Sequence[Any], shapes: dict[str, list[int]], index_ranges: dict[str, tuple[int, int]]
) -> dict[str, np.ndarray]:
    """``PROBE_ROWS`` random rows per input, of the sizes ``shapes`` gives (the warm-up's):
    indices within the recorded range, small integers, booleans, short strings, or floats
    with some timesteps all zeros."""
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in specs:
        shape = [PROBE_ROWS, *shapes[spec.name][1:]]
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "O":
            words = rng.integers(0, 5, shape)
            array = np.vectorize(lambda k: f"w{k}", otypes=[object])(words)
        elif dtype.kind == "b":
            array = rng.random(shape) < 0.5
        elif dtype.kind in "iu":
            low, high = index_ranges.get(spec.name, (0, 2))
            array = rng.integers(max(low, 0), max(high, 1), shape).astype(dtype)
        else:
            array = rng.standard_normal(shape).astype(dtype)
            if array.ndim >= 3:
                array[rng.random(shape[:2]) < ZEROED_STEPS] = 0
        feeds[spec.name] = array
    return feeds


def rows_depend_on_each_other(run: Run, feeds: dict[str, np.ndarray]) -> bool:
    """True when running the rows of ``feeds`` together gives any row other outputs than
    running it alone, or fails where each row alone runs; False when they agree, or when a
    row alone fails too (nothing learnt: the probe's values do not suit the graph)."""
    try:
        alone = [
            run({name: array[row : row + 1] for name, array in feeds.items()})
            for row in range(PROBE_ROWS)
        ]
    except Exception:  # noqa: BLE001 - values the graph refuses tell nothing about rows
        return False
    try:
        together = run(feeds)
    except Exception:  # noqa: BLE001 - the rows run alone: the batch made it fail
        return True
    try:
        return not all(_rows_agree(index, merged, alone) for index, merged in enumerate(together))
    except Exception:  # noqa: BLE001 - outputs it cannot compare: merging is not known safe
        return True


def _rows_agree(index: int, merged: Any, alone: list[Sequence[Any]]) -> bool:
    """Output ``index`` of the rows run together against each row's own run."""
    merged = np.asarray(merged)
    if merged.ndim == 0 or merged.shape[0] != PROBE_ROWS:
        return False
    for row in range(PROBE_ROWS):
        single = np.asarray(alone[row][index])
        if single.shape != (1, *merged.shape[1:]) or not _agree(merged[row], single[0]):
            return False
    return True


def _agree(merged: Any, single: Any) -> bool:
    merged, single = np.asarray(merged), np.asarray(single)
    if merged.dtype.kind in "fc":
        scale = max(1.0, float(np.nan_to_num(np.abs(single), posinf=0, neginf=0).max(initial=0)))
        return bool(np.allclose(merged, single, rtol=RTOL, atol=ATOL * scale, equal_nan=True))
    return bool(np.array_equal(merged, single))
