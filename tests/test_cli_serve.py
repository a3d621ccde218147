"""``layerserve serve``: every field of the service's Settings is a flag whose value
reaches the settings (enumerated from the model, so a new setting needs no new test), a
flag wins over its environment variable, a bad value names its flag, and the token flags
guard a real server. Also ``--version`` and what ``--help`` and the usage lines show."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import httpx
import pytest
import typer
from annotated_types import Ge, Le
from live_server import free_port, wait_ready
from pydantic import SecretStr
from typer.testing import CliRunner

from layerserve.cli import app
from layerserve.service.logs import configure_logging
from layerserve.service.settings import Settings

runner = CliRunner()
WIDE = {"COLUMNS": "200"}
MASKED = "**********"  # how the settings print a token


def flat(output: str) -> str:
    return " ".join(output.replace("│", " ").split())


def bare(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def other_value(name: str, field: Any, tmp_path: Path) -> tuple[list[str], Any]:
    """Command-line arguments that set ``name`` to a valid value other than its default,
    and that value as the settings print it (JSON)."""
    option = "--" + name.replace("_", "-")
    kind, default = bare(field.annotation), field.get_default(call_default_factory=True)
    bounds = {type(m): m for m in field.metadata}
    if kind is bool:
        return ([f"--no-{name.replace('_', '-')}"] if default else [option]), not default
    if kind in (int, float):
        step = 1 if kind is int else 0.5
        if default is None:  # unset means "derived": any valid value differs
            return [option, str(bounds[Ge].ge + step)], bounds[Ge].ge + step
        value = default + step
        if Le in bounds and value > bounds[Le].le:
            value = default - step
        assert Ge not in bounds or value >= bounds[Ge].ge
        return [option, str(value)], value
    if kind is SecretStr:
        return [option, f"token-for-{name}"], MASKED
    if kind is Path and name == "model_repository":
        (tmp_path / "repository").mkdir()
        return [option, str(tmp_path / "repository")], str(tmp_path / "repository")
    if kind is Path:
        path = tmp_path / f"{name}.txt"
        path.write_text(f"token-of-{name}\n")  # a token file is read at once
        return [option, str(path)], str(path)
    if get_origin(kind) is Literal:
        value = next(choice for choice in get_args(kind) if choice != default)
        return [option, value], value
    if get_origin(kind) is list and get_origin(get_args(kind)[0]) is Literal:
        values = list(reversed(get_args(get_args(kind)[0])))
        return [a for v in values for a in (option, v)], values
    if kind is str:
        return [option, f"{default}-other"], f"{default}-other"
    raise AssertionError(f"no test value for setting {name} of type {field.annotation}")


def print_settings(*arguments: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = runner.invoke(app, ["serve", "--print-settings", *arguments], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_every_setting_is_a_serve_flag_that_reaches_the_settings(name, tmp_path):
    field = Settings.model_fields[name]
    arguments, expected = other_value(name, field, tmp_path)
    defaults = print_settings()
    printed = print_settings(*arguments)
    assert printed[name] == expected != defaults[name]
    changed = {key for key in printed if printed[key] != defaults[key]}
    token = name.removesuffix("_file")
    assert changed == {name} | ({token} if token != name else set())  # a file sets its token


def test_every_setting_is_in_the_help_with_a_description():
    result = runner.invoke(app, ["serve", "--help"], env=WIDE)
    assert result.exit_code == 0
    listed = {line.split()[1] for line in result.stdout.splitlines() if "│ --" in line}
    options = {p.name: p for p in typer.main.get_command(app).commands["serve"].params}
    for name in Settings.model_fields:
        assert "--" + name.replace("_", "-") in listed
        description, _, default = options[name].help.rpartition(" Default: ")
        assert description and default, options[name].help


def test_a_flag_wins_over_the_environment_variable_and_the_variable_applies():
    env = {"LAYERSERVE_PORT": "9100", "LAYERSERVE_MAX_BATCH_SIZE": "8"}
    printed = print_settings("--port", "9200", env=env)
    assert printed["port"] == 9200 and printed["max_batch_size"] == 8


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--benchmark-max-seconds", "0"],
            "--benchmark-max-seconds (or LAYERSERVE_BENCHMARK_MAX_SECONDS): Input should be "
            "greater than 0",
        ),
        (["--providers", "tpu"], "--providers (or LAYERSERVE_PROVIDERS): Input should be"),
        (["--instances", "0"], "Invalid value for '--instances'"),
        (["--log-format", "xml"], "Invalid value for '--log-format'"),
        (["--log-level", "verbose"], "Invalid value for '--log-level'"),
        # a drain that never ends: SIGTERM would never stop the server
        (["--drain-seconds", "inf"], "Invalid value for '--drain-seconds'"),
        (["--exit-timeout-seconds", "1e308"], "Invalid value for '--exit-timeout-seconds'"),
        # with several workers both would listen on the port, and split its connections
        (["--port", "9411", "--grpc-port", "9411"], "port and grpc_port are both 9411"),
    ],
)
def test_a_bad_value_names_its_flag_and_serves_nothing(arguments, message):
    result = runner.invoke(app, ["serve", *arguments], env=WIDE)
    assert result.exit_code == 2
    assert message in flat(result.stderr)


def test_the_token_flags_guard_a_real_server(tmp_path):
    port = free_port()
    command = [
        *(sys.executable, "-m", "layerserve.cli", "serve", "--port", str(port)),
        *("--model-repository", str(tmp_path), "--no-demo", "--log-level", "warning"),
        *("--api-token", "api-secret", "--admin-token", "admin-secret"),
    ]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LAYERSERVE_")}
    server = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server)
        assert httpx.get(url + "/v2/models/m").status_code == 401
        api = {"Authorization": "Bearer api-secret"}
        admin = {"Authorization": "Bearer admin-secret"}
        assert httpx.get(url + "/v2/models/m", headers=api).status_code == 404  # passed
        assert httpx.delete(url + "/v1/models/m", headers=api).status_code == 403
        assert httpx.delete(url + "/v1/models/m", headers=admin).status_code == 404
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_version_is_the_installed_packages():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"layerserve {importlib.metadata.version('layerserve')}"


# ---- help and usage ----------------------------------------------------------------
COMMANDS = ["demo", "summary", "export", "serve", "upload", "bench"]
USAGE = re.compile(r"Usage: \S+ (.*)")


def visible_arguments(command: str) -> list[str]:
    click_command = typer.main.get_command(app).commands[command]
    return [
        p.name
        for p in click_command.params
        if p.param_type_name == "argument" and not getattr(p, "hidden", False)
    ]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_shows_no_bool_label_and_no_internal_argument(command):
    arguments = [command, "--help"] if command else ["--help"]
    result = runner.invoke(app, arguments, env=WIDE)
    assert result.exit_code == 0
    assert "<bool>" not in result.stdout  # a flag takes no value
    (usage,) = [m.group(1).split() for m in map(USAGE.search, result.stdout.splitlines()) if m]
    if command is None:
        assert usage == ["[OPTIONS]", "COMMAND", "[ARGS]..."]
        return
    assert usage[:2] == [command, "[OPTIONS]"]
    assert [piece.strip("{}[].") for piece in usage[2:]] == visible_arguments(command)


def test_bench_still_takes_concurrency_levels_after_the_option():
    """The hidden argument that collects "--concurrency 1 4 16" stays out of the usage
    line but keeps working (see test_cli_bench.py for the runs)."""
    click_command = typer.main.get_command(app).commands["bench"]
    hidden = [p.name for p in click_command.params if getattr(p, "hidden", False)]
    assert hidden == ["more_levels"]
    result = runner.invoke(app, ["bench", "--help"], env=WIDE)
    assert "more_levels" not in result.stdout


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LAYERSERVE_ADMIN_TOKEN", "", "LAYERSERVE_ADMIN_TOKEN must be a non-empty token"),
        ("LAYERSERVE_API_TOKEN", " padded ", "LAYERSERVE_API_TOKEN must be a non-empty token"),
        # matched as UTF-8 over HTTP, as Latin-1 over gRPC: refused, as gRPC metadata is ASCII
        ("LAYERSERVE_API_TOKEN", "tök", "visible ASCII characters"),
        ("LAYERSERVE_PROVIDERS", "cuda", "its value must be JSON"),
        ("LAYERSERVE_MODEL_REPOSITORY", "", "the model repository is empty"),
        ("LAYERSERVE_LOG_LEVEL", "loud", "LAYERSERVE_LOG_LEVEL"),
    ],
)
def test_a_bad_variable_is_one_line_naming_it_and_serves_nothing(variable, value, message):
    result = runner.invoke(app, ["serve"], env={**WIDE, variable: value})
    assert result.exit_code == 2
    assert message in flat(result.stderr)
    assert "Traceback" not in result.output


def test_a_bad_token_file_is_named(tmp_path):
    (tmp_path / "token").write_text("two words\n")
    env = {**WIDE, "LAYERSERVE_ADMIN_TOKEN_FILE": str(tmp_path / "token")}
    result = runner.invoke(app, ["serve"], env=env)
    assert result.exit_code == 2
    assert f"LAYERSERVE_ADMIN_TOKEN_FILE ('{tmp_path / 'token'}') must hold" in flat(result.stderr)


def test_a_file_is_no_model_repository(tmp_path):
    (tmp_path / "models").write_text("not a directory")
    result = runner.invoke(app, ["serve", "--model-repository", str(tmp_path / "models")])
    assert result.exit_code == 2
    assert "is a file: the model repository is a directory" in flat(result.stderr)


def test_a_log_level_in_any_case_and_trace_are_taken():
    assert print_settings(env={"LAYERSERVE_LOG_LEVEL": "DEBUG"})["log_level"] == "debug"
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        configure_logging("trace")  # uvicorn's own level, below debug
        assert root.level == 5
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_a_misspelt_variable_is_named_with_the_setting_it_is_close_to():
    result = runner.invoke(
        app, ["serve", "--print-settings"], env={"LAYERSERVE_WORKER": "4", "LAYERSERVE_URL": "x"}
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout)["workers"] == Settings().workers  # the default in force
    warning = (
        "warning: LAYERSERVE_WORKER is not a setting and is ignored "
        "(did you mean LAYERSERVE_WORKERS?)"
    )
    assert warning in flat(result.stderr)
    assert "LAYERSERVE_URL" not in result.stderr  # the client commands' variable
