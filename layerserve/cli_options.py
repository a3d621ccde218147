"""The command line's typer plumbing: command classes that keep ``--help`` and the usage
lines honest, and ``layerserve serve``'s options, one per field of the service's
``Settings``, made from the model itself so that every setting is a flag as soon as it
exists. A flag that is given wins over the ``LAYERSERVE_*`` environment variable; one that
is not leaves the variable (or the default) in force.

Only the settings model is imported here (pydantic), never the server itself."""

from __future__ import annotations

import difflib
import inspect
import json
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
from annotated_types import Ge, Gt, Le, Lt
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from typer.core import TyperCommand, TyperGroup, TyperOption

from layerserve.service.settings import Settings

ENV_PREFIX = "LAYERSERVE_"
# Read by the client commands (bench, upload), not by the server.
CLIENT_VARIABLES = frozenset({"LAYERSERVE_URL"})
# Help for the fields that have no ``description`` in Settings yet.
SECRET_NOTE = (
    "Better set by the environment variable {env}{file}: a command line can be read by "
    "other users of the machine (ps)."
)


def _no_value_label(option: TyperOption | None) -> TyperOption | None:
    if option is not None:
        option.metavar = ""  # --help takes no value: no <bool> beside it
    return option


class Group(TyperGroup):
    def get_help_option(self, ctx: typer.Context) -> TyperOption | None:
        return _no_value_label(super().get_help_option(ctx))


class Command(TyperCommand):
    """--help without a value label, and a usage line without hidden arguments."""

    def get_help_option(self, ctx: typer.Context) -> TyperOption | None:
        return _no_value_label(super().get_help_option(ctx))

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if not getattr(param, "hidden", False):
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


def serve_signature() -> inspect.Signature:
    """``serve``'s parameters: the settings, then ``--print-settings``."""
    print_settings = inspect.Parameter(
        "print_settings",
        inspect.Parameter.KEYWORD_ONLY,
        default=False,
        annotation=Annotated[
            bool,
            typer.Option(
                "--print-settings",
                metavar="",
                help="Print the settings as JSON (tokens masked) and exit, serving nothing.",
            ),
        ],
    )
    return inspect.Signature([*parameters(), print_settings])


def flag(name: str) -> str:
    """The option of setting ``name``: ``max_batch_size`` -> ``--max-batch-size``."""
    return "--" + name.replace("_", "-")


def parameters() -> list[inspect.Parameter]:
    """A keyword parameter per setting, ``Annotated`` with its typer option; its default
    None stands for "not given"."""
    return [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=_annotation(name, field),
        )
        for name, field in Settings.model_fields.items()
    ]


def settings_from(given: dict[str, Any]) -> Settings:
    """Settings from the flags given (None: not given) over the environment; a flag's
    text for a setting of a type the command line has no parser for is read as JSON."""
    values = {}
    for name, value in given.items():
        if value is None:
            continue
        if _as_json(Settings.model_fields[name]):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise typer.BadParameter(f"expected JSON: {exc}", param_hint=flag(name)) from exc
        values[name] = value
    return Settings(**values)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each ``LAYERSERVE_*`` variable that names no setting (names match in
    any case, as the settings read them), with the setting it is closest to: a typo such as
    ``LAYERSERVE_WORKER`` would otherwise leave the default in force without a word."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | CLIENT_VARIABLES
    found = []
    for variable in sorted(environ):
        name = variable.upper()
        if name.startswith(ENV_PREFIX) and name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            found.append(f"{variable} is not a setting and is ignored{hint}")
    return found


def describe_errors(error: ValidationError) -> str:
    """A settings error naming the flags (and variables) at fault."""
    lines = []
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else ""
        where = f"{flag(name)} (or {ENV_PREFIX}{name.upper()}): " if name else ""
        lines.append(f"{where}{item['msg'].removeprefix('Value error, ')}")
    return "; ".join(lines)


def _as_json(field: FieldInfo) -> bool:
    """A setting of a type the command line has no parser for: its flag takes JSON."""
    kind = _without_none(field.annotation)
    return kind not in (bool, SecretStr, int, float, str, Path) and get_origin(kind) not in (
        list,
        Literal,
    )


def _annotation(name: str, field: FieldInfo) -> Any:
    kind = _without_none(field.annotation)
    help_text = field.description or ""
    extra: dict[str, Any] = {}
    if kind is bool:
        return Annotated[
            bool | None,
            typer.Option(
                f"{flag(name)}/--no-{name.replace('_', '-')}",
                help=_help(help_text, field),
                show_default=False,
                metavar="",  # a flag takes no value
            ),
        ]
    if kind is SecretStr:
        kind = str
        files = f"{name}_file"
        file = f" or {flag(files)}" if files in Settings.model_fields else ""
        help_text += " " + SECRET_NOTE.format(env=ENV_PREFIX + name.upper(), file=file)
    elif get_origin(kind) is list:
        (item,) = get_args(kind) or (str,)
        choices = get_args(item) if get_origin(item) is Literal else ()
        extra["metavar"] = f"<{'|'.join(choices)}>" if choices else f"<{_name(item)}>"
        help_text += f" Repeat the option for several: {flag(name)} A {flag(name)} B."
        kind = list[str]
    elif kind in (int, float) or get_origin(kind) is Literal:
        bounds = {type(m): m for m in field.metadata}
        if Ge in bounds:
            extra["min"] = bounds[Ge].ge
        if Le in bounds:
            extra["max"] = bounds[Le].le
        if Gt in bounds:
            help_text += f" Over {bounds[Gt].gt}."
        if Lt in bounds:
            help_text += f" Under {bounds[Lt].lt}."
    elif _as_json(field):
        help_text += " As JSON."
        kind = str
    return Annotated[
        kind | None,
        typer.Option(flag(name), help=_help(help_text, field), show_default=False, **extra),
    ]


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _name(kind: Any) -> str:
    return getattr(kind, "__name__", str(kind)).lower()


def _help(text: str, field: FieldInfo) -> str:
    if field.default_factory is not None:
        default: Any = field.default_factory()  # type: ignore[call-arg]
    else:
        default = field.default
    if default is None or default is PydanticUndefined:
        shown = "unset"
    elif isinstance(default, bool):
        shown = str(default).lower()
    elif isinstance(default, list):
        shown = ",".join(map(str, default))
    else:
        shown = str(default)
    # Not "[default: ...]": the help is rich markup, where brackets are tags.
    return f"{text.strip()} Default: {shown}.".strip()
