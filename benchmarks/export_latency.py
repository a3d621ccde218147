"""Latency of exported graphs in onnxruntime beside the NumPy reference.

Run by hand: ``.venv/bin/python benchmarks/export_latency.py [--repeats N]``. Prints the
median (and p90) wall time per call for each model and batch size, and the speed-up.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np
from rich.console import Console
from rich.table import Table

from layerserve import examples
from layerserve.export import to_onnx
from layerserve.export.parity import sample_inputs, session

MODELS = {
    "MLP 784-256-128-10": examples.mlp,
    "Conv2D(64,3x3,same)+Flatten": examples.conv_flatten,
    "Masking+LSTM(32)": examples.masking_lstm,
}
BATCHES = (1, 64, 256)


def timings(call: Callable[[], object], repeats: int, budget_s: float) -> list[float]:
    call()  # warm-up
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(samples) < repeats and (len(samples) < 5 or time.perf_counter() < deadline):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument(
        "--budget",
        type=float,
        default=10.0,
        help="seconds at most per measurement (at least 5 runs)",
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    table = Table(
        "model", "batch", "onnxruntime median ms", "p90 ms", "NumPy median ms", "p90 ms", "speed-up"
    )
    for name, build in MODELS.items():
        model = build()
        runner = session(to_onnx(model))
        input_name = runner.get_inputs()[0].name
        for batch in BATCHES:
            x = sample_inputs(model, batch)[0]
            onnx_t = timings(partial(runner.run, None, {input_name: x}), args.repeats, args.budget)
            numpy_t = timings(
                partial(model.predict, x, batch_size=batch), args.repeats, args.budget
            )
            o50, n50 = statistics.median(onnx_t), statistics.median(numpy_t)
            table.add_row(
                name,
                str(batch),
                f"{o50 * 1e3:.3f}",
                f"{_p90(onnx_t) * 1e3:.3f}",
                f"{n50 * 1e3:.3f}",
                f"{_p90(numpy_t) * 1e3:.3f}",
                f"{n50 / o50:.1f}x",
            )
    if args.markdown:
        _print_markdown(table)
    else:
        Console(width=140).print(table)


def _print_markdown(table: Table) -> None:
    headers = [str(c.header) for c in table.columns]
    rows = zip(*[list(c.cells) for c in table.columns], strict=True)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    Console(width=200).print("\n".join(lines), markup=False, highlight=False)


def _p90(samples: list[float]) -> float:
    return float(np.percentile(samples, 90))


if __name__ == "__main__":
    main()
