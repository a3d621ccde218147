"""Latency of exported graphs in onnxruntime beside the NumPy reference.

Run by hand: ``.venv/bin/python benchmarks/export_latency.py [--repeats N]``. Prints the
median (and p90) wall time per call for each model and batch size, and the speed-up.

Then masked against unmasked recurrent layers: Masking + LSTM(32) / GRU(32) over 10
steps against the same layer, same weights, without Masking, timed interleaved in one
process (batch 1 and 64), with the masked/unmasked ratio and a verdict against
``TARGET_RATIO`` (``--masked-only`` runs just this part).
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
MASKED_PAIRS = {
    "LSTM(32), 10 steps": (examples.masked_lstm, examples.lstm_unmasked),
    "GRU(32), 10 steps": (examples.masked_gru, examples.gru_unmasked),
}
MASKED_BATCHES = (1, 64)
TARGET_RATIO = 1.3


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
    parser.add_argument(
        "--masked-only", action="store_true", help="only masked against unmasked RNNs"
    )
    args = parser.parse_args()
    if not args.masked_only:
        _print(latency_table(args), args.markdown)
    table, verdict = masked_table(args)
    _print(table, args.markdown)
    Console(width=200).print(verdict, markup=False, highlight=False)


def _print(table: Table, markdown: bool) -> None:
    if markdown:
        _print_markdown(table)
    else:
        Console(width=140).print(table)


def latency_table(args: argparse.Namespace) -> Table:
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
    return table


def interleaved(
    calls: list[Callable[[], object]], repeats: int, budget_s: float
) -> list[list[float]]:
    """Times each call ``repeats`` times, taking turns (the order flips every round), so
    that the machine's drift affects every call alike."""
    for call in calls:
        call()  # warm-up
    samples: list[list[float]] = [[] for _ in calls]
    deadline = time.perf_counter() + budget_s
    for round_ in range(repeats):
        if round_ >= 5 and time.perf_counter() > deadline:
            break
        order = range(len(calls)) if round_ % 2 == 0 else reversed(range(len(calls)))
        for index in order:
            start = time.perf_counter()
            calls[index]()
            samples[index].append(time.perf_counter() - start)
    return samples


def masked_table(args: argparse.Namespace) -> tuple[Table, str]:
    """Masked against unmasked: both exported, checked against the NumPy reference, then
    timed interleaved; returns the table and the verdict line."""
    table = Table(
        "layer",
        "batch",
        "masked median ms",
        "p90 ms",
        "unmasked median ms",
        "p90 ms",
        "masked / unmasked",
    )
    ratios = {}
    for name, (build_masked, build_unmasked) in MASKED_PAIRS.items():
        masked, unmasked = build_masked(), build_unmasked()
        runners = [session(to_onnx(masked)), session(to_onnx(unmasked))]
        inputs = [r.get_inputs()[0].name for r in runners]
        for batch in MASKED_BATCHES:
            x = sample_inputs(masked, batch)[0]  # some all-zero (masked) steps anywhere
            expected = masked.predict(x, batch_size=batch)
            np.testing.assert_allclose(
                runners[0].run(None, {inputs[0]: x})[0], expected, rtol=1e-5, atol=1e-5
            )
            calls = [partial(r.run, None, {i: x}) for r, i in zip(runners, inputs, strict=True)]
            masked_t, unmasked_t = interleaved(calls, args.repeats * 40, args.budget)
            m50, u50 = statistics.median(masked_t), statistics.median(unmasked_t)
            ratios[(name, batch)] = m50 / u50
            table.add_row(
                name,
                str(batch),
                f"{m50 * 1e3:.4f}",
                f"{_p90(masked_t) * 1e3:.4f}",
                f"{u50 * 1e3:.4f}",
                f"{_p90(unmasked_t) * 1e3:.4f}",
                f"{m50 / u50:.2f}x",
            )
    (worst_name, worst_batch), worst = max(ratios.items(), key=lambda item: item[1])
    verdict = "PASS" if worst <= TARGET_RATIO else "FAIL"
    line = (
        f"{verdict}: masked within {TARGET_RATIO}x of unmasked? worst ratio {worst:.2f}x "
        f"({worst_name}, batch {worst_batch})"
    )
    return table, line


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
