"""The ``layerserve`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from layerserve.errors import LayerserveError

app = typer.Typer(
    help="Keras-style models without TensorFlow.", no_args_is_help=True, add_completion=False
)
console = Console()


@app.command()
def demo(
    batch: Annotated[int, typer.Option(min=1, help="Rows in each example prediction.")] = 2,
) -> None:
    """Build the Keras documentation's example models, print summaries and predictions."""
    from layerserve.examples import EXAMPLES, example_inputs
    from layerserve.models.summary import summary_text

    for name, builder in EXAMPLES.items():
        model = builder()
        console.rule(f"[bold]{name}")
        console.print(summary_text(model), markup=False, highlight=False, soft_wrap=True)
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
    console.print(table)


@app.command()
def summary(
    model_path: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help=".keras, .h5, JSON or layerserve file"),
    ],
    weights: Annotated[Path | None, typer.Option(help="Weights file for a JSON model.")] = None,
    unsafe: Annotated[
        bool, typer.Option("--unsafe", help="Allow Lambda bytecode (trusted files only).")
    ] = False,
) -> None:
    """Print a saved model's layers, output shapes and parameter counts."""
    from layerserve.models import load_model
    from layerserve.models.summary import summary_text

    try:
        model = load_model(model_path, safe_mode=not unsafe, weights=weights)
    except LayerserveError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(code=2) from exc
    console.print(summary_text(model), markup=False, highlight=False, soft_wrap=True)


@app.command("export")
def export_command(
    model_path: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help=".keras, .h5, JSON or layerserve file"),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the .onnx.")],
    opset: Annotated[
        int | None,
        typer.Option(help="ONNX opset (default: newest the installed onnxruntime runs)."),
    ] = None,
    weights: Annotated[Path | None, typer.Option(help="Weights file for a JSON model.")] = None,
    unsafe: Annotated[
        bool, typer.Option("--unsafe", help="Allow Lambda bytecode (trusted files only).")
    ] = False,
) -> None:
    """Export a saved model to a checked, optimised ONNX graph and verify its outputs."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from layerserve.export import to_onnx
    from layerserve.export.parity import compare
    from layerserve.models import load_model

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True
    ) as progress:
        task = progress.add_task("loading the model", total=3)
        try:
            model = load_model(model_path, safe_mode=not unsafe, weights=weights)
            progress.update(task, description="converting and checking the graph", advance=1)
            onnx_model = to_onnx(model, output, opset=opset)
            progress.update(task, description="comparing onnxruntime with the reference", advance=1)
            report = compare(model, onnx_model)
        except LayerserveError as exc:
            progress.stop()
            console.print(f"[red]error:[/red] {exc}", highlight=False)
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
    console.print(table)
    if not report.ok():
        raise typer.Exit(code=1)


@app.command()
def serve(
    model_repository: Annotated[
        Path | None, typer.Option(help="Model repository: <repo>/<model>/<version>/model.onnx.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8080).")] = None,
    demo: Annotated[
        bool | None,
        typer.Option("--demo/--no-demo", help="Export the demo models into an empty repository."),
    ] = None,
) -> None:
    """Serve a model repository over V2 and TensorFlow Serving REST. Every option also
    reads LAYERSERVE_<NAME> environment variables."""
    from layerserve.service.server import serve as run_server
    from layerserve.service.settings import Settings

    given = {"model_repository": model_repository, "host": host, "port": port, "demo": demo}
    settings = Settings(**{k: v for k, v in given.items() if v is not None})
    base = f"http://{settings.host}:{settings.port}"
    console.print(
        f"layerserve on {base}, models from {settings.model_repository}. Once "
        "ready, try (the demo MLP, one row of 784 values):",
        highlight=False,
    )
    console.print(curl_example(base), markup=False, highlight=False, soft_wrap=True)
    run_server(settings)


def curl_example(base: str) -> str:
    """A V2 inference request for the demo MLP that can be pasted into a shell."""
    values = "'\"$(python3 -c 'print([0.5] * 784)')\"'"  # 784 values, made by the shell
    body = (
        '{"inputs": [{"name": "hidden_1_input", "shape": [1, 784], "datatype": "FP32", '
        f'"data": {values}}}]}}'
    )
    return f"curl -s {base}/v2/models/mlp/infer -H 'Content-Type: application/json' -d '{body}'"


if __name__ == "__main__":
    app()
