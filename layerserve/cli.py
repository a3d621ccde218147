"""The ``layerserve`` command line."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from layerserve import __version__, cli_options
from layerserve.cli_options import Command, Group
from layerserve.errors import LayerserveError, UnsafeDeserializationError

if TYPE_CHECKING:
    from layerserve.bench import Outcome, Plan

UNSAFE_MESSAGE = (
    "the model has a Lambda layer whose function is stored as Python bytecode, and "
    "loading it runs that code. For a file you trust, add --unsafe; otherwise rebuild the "
    "Lambda in code and load the weights."
)


app = typer.Typer(
    cls=Group,
    help="Keras-style models without TensorFlow.",
    no_args_is_help=True,
    add_completion=False,
)


# Made for each use, not at import: a console reads the terminal's width (COLUMNS) when it
# is made, and the width is that of the run printing, as for the progress bars below.
def _stdout() -> Console:
    return Console()


def _stderr() -> Console:
    return Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        _stdout().print(f"layerserve {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            metavar="",
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Keras-style models without TensorFlow."""


@app.command(cls=Command)
def demo(
    batch: Annotated[int, typer.Option(min=1, help="Rows in each example prediction.")] = 2,
) -> None:
    """Build the Keras documentation's example models, print summaries and predictions."""
    from layerserve.examples import EXAMPLES, example_inputs
    from layerserve.models.summary import summary_text

    for name, builder in EXAMPLES.items():
        model = builder()
        _stdout().rule(f"[bold]{name}")
        _stdout().print(summary_text(model), markup=False, highlight=False, soft_wrap=True)
        inputs = example_inputs(model, batch)
        outputs = model.predict(inputs if len(inputs) > 1 else inputs[0])
        _print_prediction(model, inputs, outputs)


def _print_prediction(model, inputs: list[np.ndarray], outputs: np.ndarray) -> None:  # noqa: ANN001
    table = Table("input", "shape", "output shape", "first row (first 6 values)")
    first = np.asarray(outputs[0] if isinstance(outputs, list) else outputs)
    table.add_row(
        ", ".join(model.input_names),
        str([a.shape for a in inputs]),
        str(first.shape),
        np.array2string(first.reshape(first.shape[0], -1)[0][:6], precision=4, suppress_small=True),
    )
    _stdout().print(table)


@app.command(cls=Command)
def summary(
    model_path: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help=".keras, .h5, JSON or layerserve file"),
    ],
    weights: Annotated[Path | None, typer.Option(help="Weights file for a JSON model.")] = None,
    unsafe: Annotated[
        bool,
        typer.Option("--unsafe", metavar="", help="Allow Lambda bytecode (trusted files only)."),
    ] = False,
) -> None:
    """Print a saved model's layers, output shapes and parameter counts."""
    from layerserve.models import load_model
    from layerserve.models.summary import summary_text

    try:
        model = load_model(model_path, safe_mode=not unsafe, weights=weights)
    except UnsafeDeserializationError as exc:
        _fail(UNSAFE_MESSAGE, code=2, cause=exc)
    except LayerserveError as exc:
        _stdout().print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(code=2) from exc
    _stdout().print(summary_text(model), markup=False, highlight=False, soft_wrap=True)


def _named_functions(specs: list[str]) -> dict[str, Any]:
    """``NAME=module:attribute`` options as custom objects (the module is imported: it is
    the user's own code)."""
    import importlib

    objects: dict[str, Any] = {}
    for spec in specs:
        name, _, target = spec.partition("=")
        module_name, _, attribute = target.partition(":")
        if not name or not module_name or not attribute:
            raise typer.BadParameter(
                f"Expected NAME=module:attribute. Received: {spec!r}", param_hint="--function"
            )
        try:
            objects[name] = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise typer.BadParameter(
                f"Cannot import {attribute!r} from {module_name!r}: {exc}",
                param_hint="--function",
            ) from exc
    return objects


@app.command("export", cls=Command)
def export_command(
    model_path: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help=".keras, .h5, JSON or layerserve file"),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the .onnx.")],
    opset: Annotated[
        int | None,
        typer.Option(
            help="ONNX opset (default 21, which every supported onnxruntime loads; at most "
            "the newest the installed onnxruntime runs)."
        ),
    ] = None,
    weights: Annotated[Path | None, typer.Option(help="Weights file for a JSON model.")] = None,
    unsafe: Annotated[
        bool,
        typer.Option("--unsafe", metavar="", help="Allow Lambda bytecode (trusted files only)."),
    ] = False,
    function: Annotated[
        list[str] | None,
        typer.Option(
            "--function",
            metavar="<NAME=module:attribute>",
            help="A function a Lambda layer calls by name (imported from your code; repeatable).",
        ),
    ] = None,
) -> None:
    """Export a saved model to a checked, optimised ONNX graph and verify its outputs."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    if output.exists() and any(
        output.samefile(source) for source in (model_path, weights) if source and source.exists()
    ):
        _fail(f"--output {output} is the model's own file: write the ONNX graph elsewhere", 2)

    from layerserve.export import to_onnx
    from layerserve.export.parity import compare
    from layerserve.models import load_model

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), console=_stdout(), transient=True
    ) as progress:
        task = progress.add_task("loading the model", total=3)
        try:
            objects = _named_functions(function or [])
            model = load_model(
                model_path, custom_objects=objects, safe_mode=not unsafe, weights=weights
            )
            progress.update(task, description="converting and checking the graph", advance=1)
            onnx_model = to_onnx(model, output, opset=opset)
            progress.update(task, description="comparing onnxruntime with the reference", advance=1)
            report = compare(model, onnx_model)
        except UnsafeDeserializationError as exc:
            progress.stop()
            _fail(UNSAFE_MESSAGE, code=2, cause=exc)
        except LayerserveError as exc:
            progress.stop()
            _stdout().print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(code=2) from exc
        progress.update(task, advance=1)
    table = Table("", "", show_header=False)
    table.add_row("written", str(output))
    table.add_row("opset", str(onnx_model.opset_import[0].version))
    table.add_row("nodes", str(len(onnx_model.graph.node)))
    table.add_row("parameters", f"{model.count_params():,}")
    table.add_row("inputs", ", ".join(i.name for i in onnx_model.graph.input))
    table.add_row("outputs", ", ".join(o.name for o in onnx_model.graph.output))
    verdict = "ok" if report.ok() else "MISMATCH"
    table.add_row(
        "parity",
        f"{verdict}: max |onnxruntime - reference| = "
        f"{report.max_abs_error:.2e}, masks equal: {report.masks_equal}",
    )
    _stdout().print(table)
    if not report.ok():
        raise typer.Exit(code=1)


def serve(print_settings: bool = False, **flags: Any) -> None:
    """Serve a model repository over V2 and TensorFlow Serving REST. Every option is a
    setting, also read from its LAYERSERVE_<NAME> environment variable; a flag given wins
    over the variable."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    try:
        settings = cli_options.settings_from(flags)
    except ValidationError as exc:
        _fail(cli_options.describe_errors(exc), code=2)
    except SettingsError as exc:  # a variable of a list setting that is not JSON
        _fail(f'{exc}: its value must be JSON, as in LAYERSERVE_PROVIDERS=\'["cuda", "cpu"]\'', 2)
    for warning in cli_options.unknown_variables(os.environ):
        _stderr().print(
            f"warning: {warning}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if print_settings:
        _stdout().print_json(data=settings.model_dump(mode="json"))
        return
    from layerserve.service.launch import serve as run_server

    if settings.log_format == "text":  # JSON logs: every line a collector reads is JSON
        base = f"http://{settings.host}:{settings.port}"
        _stdout().print(
            f"layerserve on {base}, models from {settings.model_repository}. Once "
            "ready, try (the demo MLP, one row of 784 values):",
            highlight=False,
        )
        _stdout().print(curl_example(base), markup=False, highlight=False, soft_wrap=True)
    run_server(settings)


serve.__signature__ = cli_options.serve_signature()  # type: ignore[attr-defined]
app.command(cls=Command)(serve)


def curl_example(base: str) -> str:
    """A V2 inference request for the demo MLP that can be pasted into a shell."""
    values = "'\"$(python3 -c 'print([0.5] * 784)')\"'"  # 784 values, made by the shell
    body = (
        '{"inputs": [{"name": "hidden_1_input", "shape": [1, 784], "datatype": "FP32", '
        f'"data": {values}}}]}}'
    )
    return f"curl -s {base}/v2/models/mlp/infer -H 'Content-Type: application/json' -d '{body}'"


# ---- client commands: they speak HTTP to a running server --------------------------
DEFAULT_URL = "http://127.0.0.1:8080"
PROGRESS_MIN_BYTES = 1024 * 1024


class BenchProtocol(StrEnum):
    json = "json"
    binary = "binary"
    tfserving = "tfserving"


def _fail(message: str, code: int = 1, cause: BaseException | None = None) -> NoReturn:
    _stderr().print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code=code) from cause


@app.command(cls=Command)
def upload(
    model_file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help=".onnx, .keras, .h5 or layerserve saved model."
        ),
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="Model name on the server.")],
    url: Annotated[str, typer.Option(envvar="LAYERSERVE_URL", help="Server URL.")] = DEFAULT_URL,
    config: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Model config JSON (batching, providers)."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="LAYERSERVE_ADMIN_TOKEN", help="Admin token.", show_default=False),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", metavar="", help="Print the server's JSON.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for the upload and its checks.")
    ] = 600.0,
) -> None:
    """Upload a model file as the next version of NAME and print that version's metadata.
    The server converts Keras-family files to ONNX and checks them against the reference."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from layerserve import client

    size = model_file.stat().st_size
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=_stderr(),
        transient=True,
        disable=size < PROGRESS_MIN_BYTES,
    )
    task = progress.add_task(f"uploading {model_file.name}", total=size)

    def advance(count: int) -> None:
        progress.advance(task, count)
        if progress.tasks[task].finished:
            progress.update(task, description="the server is checking the model")

    try:
        config_text = None if config is None else client.read_config(config)
        with progress:
            metadata = client.upload(url, name, model_file, config_text, token, timeout, advance)
    except client.InvalidConfig as exc:
        _fail(str(exc), code=2)
    except (client.ServerUnreachable, client.ServerRefused) as exc:
        _fail(str(exc))
    if as_json:
        _stdout().print_json(data=metadata)
    else:
        _stdout().print(version_table(metadata))


def version_table(metadata: dict[str, Any]) -> Table:
    """An uploaded version's metadata: what it is, its tensors and the parity check."""
    table = Table(show_header=False, title="uploaded model version")
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # a sha256 is shown whole
    labels = {
        "name": "name",
        "version": "version",
        "source_format": "source format",
        "original_filename": "file",
        "sha256": "sha256",
    }
    for key, label in labels.items():
        table.add_row(label, str(metadata.get(key, "-")))
    for kind in ("inputs", "outputs"):
        for tensor in metadata.get(kind) or []:
            table.add_row(kind[:-1], f"{tensor['name']} {tensor['datatype']} {tensor['shape']}")
    masks = metadata.get("mask_outputs") or {}
    if masks:
        pairs = masks.items() if isinstance(masks, dict) else [(m, "") for m in masks]
        table.add_row("mask outputs", ", ".join(f"{k} ({v})" if v else k for k, v in pairs))
    table.add_row("providers", ", ".join(metadata.get("providers") or []) or "-")
    parity = metadata.get("parity")
    if parity is None:
        table.add_row("parity", "not checked: an ONNX upload is served as it is")
    else:
        table.add_row(
            "parity",
            f"max abs error {parity['max_abs_error']:.2e}, masks equal: "
            f"{parity.get('masks_equal')}, batch sizes: {parity.get('batch_sizes')}",
        )
    return table


@app.command(cls=Command)
def bench(
    model: Annotated[str, typer.Option("--model", "-m", help="Model name.")],
    url: Annotated[str, typer.Option(envvar="LAYERSERVE_URL", help="Server URL.")] = DEFAULT_URL,
    version: Annotated[str | None, typer.Option(help="Model version (default: latest).")] = None,
    protocol: Annotated[
        BenchProtocol, typer.Option(help="V2 JSON, V2 binary tensors or TF Serving :predict.")
    ] = BenchProtocol.json,
    batch: Annotated[int, typer.Option(min=1, help="Rows per request.")] = 1,
    concurrency: Annotated[
        list[str] | None,
        typer.Option(
            metavar="<levels>",
            help="Requests kept in flight, one level each: --concurrency 1 4 16 (the "
            "default), or 1,4,16.",
        ),
    ] = None,
    duration: Annotated[float, typer.Option(min=0.01, help="Measured seconds per level.")] = 5.0,
    warmup: Annotated[float, typer.Option(min=0, help="Unmeasured seconds first.")] = 1.0,
    shape: Annotated[
        list[str] | None,
        typer.Option(
            metavar="<NAME=D1,D2,...>",
            help="The dimensions after the first, for an input with variable sizes (repeatable).",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar=["LAYERSERVE_API_TOKEN", "LAYERSERVE_ADMIN_TOKEN"],
            help="API or admin token.",
            show_default=False,
        ),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Write a PNG of latency and throughput (matplotlib).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", metavar="", help="Print the results as JSON.")
    ] = False,
    more_levels: Annotated[
        list[str] | None, typer.Argument(hidden=True, show_default=False)
    ] = None,  # "--concurrency 1 4 16": the values after the first land here
) -> None:
    """Load a model on a running server with random inputs at each concurrency level and
    print requests/s, samples/s and latency percentiles of the successful requests; failed
    ones are counted apart. Every response's status is checked; the command fails when no
    request succeeded."""
    from layerserve import bench as benchmark
    from layerserve import client

    if plot is not None:
        from layerserve.plotting import PlottingUnavailable, require_matplotlib

        try:
            require_matplotlib()
        except PlottingUnavailable as exc:
            _fail(str(exc), code=2)
    levels = _levels(concurrency, more_levels)
    try:
        plan = benchmark.plan(url, model, version, protocol.value, batch, shape or [], token)
        outcome = _run_with_progress(plan, levels, warmup, duration)
    except (client.ServerUnreachable, client.ServerRefused) as exc:
        _fail(str(exc))
    except LayerserveError as exc:  # the command line does not fit the model
        _fail(str(exc), code=2)
    if as_json:
        _stdout().print_json(data=benchmark.report(plan, outcome, warmup, duration))
    else:
        _stdout().print(_bench_table(plan, outcome, duration))
    if outcome.first_error is not None:
        failed = sum(run.errors for run in outcome.runs)
        status, message = outcome.first_error
        _stderr().print(
            f"{failed} requests failed; the first answered {status}: {message}",
            markup=False,
            highlight=False,
        )
    if plot is not None:
        from layerserve.plotting import write_png

        write_png(outcome.runs, plot, plan.title)
        _stderr().print(f"plot written to {plot}", markup=False, highlight=False)
    if outcome.all_failed:
        _fail("no request succeeded")


def _levels(concurrency: list[str] | None, more: list[str] | None) -> list[int]:
    if more and not concurrency:
        _fail(f"unexpected arguments {' '.join(more)}; concurrency levels follow --concurrency", 2)
    values = [v for item in [*(concurrency or []), *(more or [])] for v in item.split(",")]
    try:
        levels = [int(v) for v in values if v.strip()]
    except ValueError:
        levels = [0]
    if any(level < 1 for level in levels):
        _fail(f"--concurrency takes positive integers, received {' '.join(values)}", code=2)
    return levels or [1, 4, 16]


def _run_with_progress(plan: Plan, levels: list[int], warmup: float, duration: float) -> Outcome:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from layerserve import bench as benchmark

    per_level = warmup + duration
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TimeRemainingColumn(),
        console=_stderr(),
        transient=True,
    ) as progress:
        task = progress.add_task(f"concurrency {levels[0]}", total=per_level * len(levels))

        def tick(index: int, seconds: float) -> None:
            description = f"concurrency {levels[index]}"
            progress.update(task, completed=index * per_level + seconds, description=description)

        return benchmark.run(plan, levels, warmup, duration, tick)


def _bench_table(plan: Plan, outcome: Outcome, duration: float) -> Table:
    from layerserve import bench as benchmark
    from layerserve.loadgen import milliseconds

    table = Table(
        "concurrency",
        "requests/s",
        "samples/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "errors",
        title=f"{plan.title}, {duration:g} s per level",
    )
    for row in benchmark.level_rows(outcome):
        table.add_row(
            str(row["concurrency"]),
            f"{row['requests_per_s']:,.0f}",
            f"{row['samples_per_s']:,.0f}",
            milliseconds(row["p50_ms"]),
            milliseconds(row["p90_ms"]),
            milliseconds(row["p99_ms"]),
            str(row["errors"]),
        )
    return table


if __name__ == "__main__":
    app()
