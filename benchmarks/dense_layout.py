"""Dense on rank >= 3 inputs in onnxruntime: ``MatMul`` + ``Add`` (what the exporter
writes) against ``Reshape`` -> ``Gemm`` -> ``Reshape`` (one 2-D GEMM with the bias fused).

Run by hand: ``.venv/bin/python benchmarks/dense_layout.py [--rounds N] [--markdown]``.
Both graphs of a row run interleaved in one process, ``rounds`` times, each time for
``calls`` calls; the table shows the median time per call of each and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from rich.console import Console
from rich.table import Table

from layerserve.export.opsets import ir_version_for, max_runtime_opset

# (timesteps, features, units): a text model's Dense over tokens, a tagger's head, a
# transformer feed-forward block.
SHAPES = (
    (10, 32, 16),
    (20, 64, 32),
    (16, 64, 64),
    (30, 128, 32),
    (50, 128, 64),
    (100, 256, 256),
    (128, 64, 512),
)
BATCHES = (1, 64)


def graph(kind: str, steps: int, features: int, units: int, opset: int) -> bytes:
    rng = np.random.default_rng(0)
    kernel = numpy_helper.from_array(rng.normal(size=(features, units)).astype("float32"), "W")
    bias = numpy_helper.from_array(rng.normal(size=(units,)).astype("float32"), "B")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", steps, features])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", steps, units])
    if kind == "MatMul+Add":
        nodes = [
            helper.make_node("MatMul", ["x", "W"], ["product"]),
            helper.make_node("Add", ["product", "B"], ["y"]),
        ]
        constants = [kernel, bias]
    else:
        rows = numpy_helper.from_array(np.array([-1, features], np.int64), "rows")
        back = numpy_helper.from_array(np.array([-1, steps, units], np.int64), "back")
        nodes = [
            helper.make_node("Reshape", ["x", "rows"], ["flat"]),
            helper.make_node("Gemm", ["flat", "W", "B"], ["flat_y"]),
            helper.make_node("Reshape", ["flat_y", "back"], ["y"]),
        ]
        constants = [kernel, bias, rows, back]
    model = helper.make_model(
        helper.make_graph(nodes, kind, [x], [y], initializer=constants),
        opset_imports=[helper.make_opsetid("", opset)],
        ir_version=ir_version_for(opset),
    )
    return model.SerializeToString()


def measure(rounds: int, threads: int) -> list[tuple]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    opset = max_runtime_opset()
    rows = []
    for steps, features, units in SHAPES:
        for batch in BATCHES:
            x = np.random.default_rng(1).random((batch, steps, features), dtype=np.float32)
            sessions = {
                kind: ort.InferenceSession(
                    graph(kind, steps, features, units, opset),
                    options,
                    providers=["CPUExecutionProvider"],
                )
                for kind in ("MatMul+Add", "Reshape+Gemm")
            }
            outputs = [s.run(None, {"x": x})[0] for s in sessions.values()]
            np.testing.assert_allclose(*outputs, rtol=1e-5, atol=1e-4)
            calls = max(5, int(2e6 / (batch * steps * features * units) * 50))
            times: dict[str, list[float]] = {kind: [] for kind in sessions}
            for _ in range(rounds):
                for kind, runner in sessions.items():
                    start = time.perf_counter()
                    for _ in range(calls):
                        runner.run(None, {"x": x})
                    times[kind].append((time.perf_counter() - start) / calls * 1e3)
            a, b = (statistics.median(times[k]) for k in sessions)
            rows.append((f"({steps}, {features}) -> {units}", batch, threads, a, b, a / b))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 0])
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rows = [row for threads in args.threads for row in measure(args.rounds, threads)]
    headers = ("input -> units", "batch", "threads", "MatMul+Add ms", "Reshape+Gemm ms", "ratio")
    if args.markdown:
        print("| " + " | ".join(headers) + " |")  # noqa: T201 - the benchmark's output
        print("|" + "---|" * len(headers))  # noqa: T201
        for shape, batch, threads, a, b, ratio in rows:
            line = (
                f"| {shape} | {batch} | {threads or 'default'} | {a:.4f} | {b:.4f} | {ratio:.2f} |"
            )
            print(line)  # noqa: T201
        return
    table = Table(*headers)
    for shape, batch, threads, a, b, ratio in rows:
        table.add_row(
            shape, str(batch), str(threads or "default"), f"{a:.4f}", f"{b:.4f}", f"{ratio:.2f}"
        )
    Console().print(table)


if __name__ == "__main__":
    main()
