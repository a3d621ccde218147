"""The layerserve command line, run on real files."""

from __future__ import annotations

import onnx
import pytest
from typer.testing import CliRunner

from layerserve import examples
from layerserve.cli import app
from layerserve.layers import Dense, Lambda
from layerserve.models import Sequential

runner = CliRunner()


def flat(output: str) -> str:
    """The output's words, without table borders or line wrapping."""
    return " ".join(output.replace("│", " ").split())


def test_demo_prints_each_example_summary_and_a_prediction():
    result = runner.invoke(app, ["demo", "--batch", "3"])
    assert result.exit_code == 0, result.output
    for name, build in examples.EXAMPLES.items():
        model = build()
        assert f'Model: "{name}"' in result.output
        assert f"Total params: {model.count_params():,}" in result.output
    assert "(3, 10)" in result.output  # the MLP's prediction for 3 rows


@pytest.mark.parametrize("name", ["mlp", "masking_lstm", "hadamard"])
def test_export_writes_a_checked_graph_and_reports_parity(tmp_path, name):
    model = examples.EXAMPLES[name]()
    source, target = tmp_path / f"{name}.layerserve", tmp_path / f"{name}.onnx"
    model.save(source)
    arguments = ["export", str(source), "-o", str(target), "--opset", "13"]
    if name == "hadamard":
        arguments.append("--unsafe")  # its Lambda is stored as bytecode
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    onnx_model = onnx.load(target)
    onnx.checker.check_model(onnx_model, full_check=True)
    assert onnx_model.opset_import[0].version == 13
    assert f"{model.count_params():,}" in result.output
    assert f"nodes {len(onnx_model.graph.node)}" in flat(result.output)
    assert "parity ok" in flat(result.output)


def test_export_never_writes_over_the_model_it_reads(tmp_path):
    source = tmp_path / "mlp.h5"
    examples.mlp().save(source)
    before = source.read_bytes()
    result = runner.invoke(app, ["export", str(source), "-o", str(tmp_path / "." / "mlp.h5")])
    assert result.exit_code == 2
    assert "is the model's own file: write the ONNX graph elsewhere" in flat(result.stderr)
    assert source.read_bytes() == before


@pytest.mark.parametrize("command", ["export", "summary"])
def test_lambda_bytecode_is_refused_naming_the_unsafe_flag(tmp_path, command):
    model = Sequential([Dense(2, input_shape=(3,)), Lambda(lambda x: x * 2)])
    source, target = tmp_path / "lambda.layerserve", tmp_path / "lambda.onnx"
    model.save(source)
    arguments = [command, str(source), *(["-o", str(target)] if command == "export" else [])]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2
    message = flat(result.stderr)
    assert "Lambda layer whose function is stored as Python bytecode" in message
    assert "For a file you trust, add --unsafe" in message
    assert "safe_mode" not in message  # the library's argument, not this command's
    assert not target.exists()
    trusted = runner.invoke(app, [*arguments, "--unsafe"])
    assert trusted.exit_code == 0, trusted.output


def test_summary_of_a_saved_model_and_of_a_corrupt_file(tmp_path):
    model = examples.conv_flatten()
    path = tmp_path / "conv.layerserve"
    model.save(path)
    result = runner.invoke(app, ["summary", str(path)])
    assert result.exit_code == 0, result.output
    assert "(None, 64, 32, 32)" in result.output and "Total params: 1,792" in result.output
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    result = runner.invoke(app, ["summary", str(broken)])
    assert result.exit_code == 2
    assert "error:" in result.output
