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


if __name__ == "__main__":
    app()
