"""Shared (de)serialization: Keras-version semantics and ``{class_name, config}`` objects.

Keras changed the meaning of a few names between versions (``hard_sigmoid``, the LSTM
defaults, activity-regularizer scaling). A loader states which Keras wrote a file with
:func:`keras_semantics`; the lookups below consult it. Code that builds models directly
gets the Keras 2.2 semantics the documentation describes.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from layerserve.errors import ConfigError, UnknownObjectError, WeightsError

REFERENCE_KERAS_VERSION = "2.2.4"

_semantics: contextvars.ContextVar[tuple[int, int, int]] = contextvars.ContextVar(
    "keras_semantics", default=(2, 2, 4)
)
# True while reading a file tf.keras wrote inside TensorFlow 1.13-2.3, whose versions
# ("2.2.4-tf", "2.3.0-tf") look like multi-backend Keras's but whose backend is TF 1/2.
_tf_keras_file: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tf_keras_file", default=False
)
_custom_objects: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "custom_objects", default=None
)
# True while a document Keras wrote (not layerserve) is being rebuilt.
_keras_document: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "keras_document", default=False
)


@contextlib.contextmanager
def _set_within(variable: contextvars.ContextVar[Any], value: Any) -> Iterator[None]:
    """``variable`` holds ``value`` inside the block, and what it held before after it."""
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


def parse_version(version: str | tuple[int, ...] | None) -> tuple[int, int, int]:
    """``"3.15.1"`` -> ``(3, 15, 1)``; ``"2.2.4-tf"`` -> ``(2, 2, 4)``; None -> reference."""
    if version is None:
        version = REFERENCE_KERAS_VERSION
    if isinstance(version, tuple):
        parts = [int(p) for p in version[:3]]
    else:
        parts = [int(p) for p in re.findall(r"\d+", str(version))[:3]]
    if not parts:
        raise ConfigError(
            f"Expected a Keras version such as '2.2.4'. Received: version={version!r}"
        )
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


@contextlib.contextmanager
def keras_semantics(version: str | tuple[int, ...] | None) -> Iterator[tuple[int, int, int]]:
    """Interpret names and defaults as the given Keras version did, inside the block."""
    token = _semantics.set(parse_version(version))
    tag = _tf_keras_file.set(isinstance(version, str) and version.strip().endswith("-tf"))
    try:
        yield _semantics.get()
    finally:
        _tf_keras_file.reset(tag)
        _semantics.reset(token)


def semantics_version() -> tuple[int, int, int]:
    return _semantics.get()


def semantics_explicit() -> bool:
    """Whether a :func:`keras_semantics` block is in force (a file is being read), as
    opposed to the reference semantics that models built in code get."""
    return _semantics.get(None) is not None


def keras_document_scope(written_by_keras: bool) -> contextlib.AbstractContextManager[None]:
    """Within the block, the layers made are those of a document Keras wrote: its
    records say what Keras did (a call recorded without a mask was made without one),
    where a model built in layerserve leaves it open."""
    return _set_within(_keras_document, written_by_keras)


def in_keras_document() -> bool:
    return _keras_document.get()


def is_tf_keras_file() -> bool:
    """Whether the file being read was written by tf.keras bundled with TensorFlow 1.13-2.3
    (a version such as "2.2.4-tf"), not by multi-backend Keras of the same number."""
    return _tf_keras_file.get()


def is_keras3() -> bool:
    return _semantics.get()[0] >= 3


def version_string(version: tuple[int, int, int], tf_keras_file: bool = False) -> str:
    """``"2.2.4"``; ``"2.2.4-tf"`` for a file of tf.keras bundled with TensorFlow."""
    return ".".join(str(p) for p in version) + ("-tf" if tf_keras_file else "")


def custom_object_scope(
    objects: Mapping[str, Any] | None,
) -> contextlib.AbstractContextManager[None]:
    """Make user classes and functions findable by name while deserializing."""
    return _set_within(_custom_objects, {**(_custom_objects.get() or {}), **(objects or {})})


def custom_objects() -> Mapping[str, Any]:
    return _custom_objects.get() or {}


def serialize(obj: Any) -> dict[str, Any] | None:
    """``{"class_name": ..., "config": ...}`` for an object with ``get_config``."""
    if obj is None:
        return None
    return {"class_name": type(obj).__name__, "config": obj.get_config()}


def split_identifier(identifier: Mapping[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    """Read a Keras 2 ``{class_name, config}`` or Keras 3 ``{module, class_name, ...}``."""
    if "class_name" not in identifier:
        raise ConfigError(
            f"Expected a {kind} config with a 'class_name' key. Received: {dict(identifier)!r}"
        )
    class_name = identifier["class_name"]
    registered = identifier.get("registered_name")
    if isinstance(registered, str) and registered and registered != class_name:
        # Keras 3 names custom objects "package>Name"; the bare name is what users register.
        class_name = registered.split(">")[-1]
    config = identifier.get("config") or {}
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"Expected the {kind} config to be a mapping. Received: config={config!r}"
        )
    return str(class_name), dict(config)


def lookup(
    name: str,
    registry: Mapping[str, Any],
    kind: str,
    normalize: Callable[[str], str] | None = None,
) -> Any:
    """Find ``name`` among the user's custom objects, then in ``registry``."""
    custom = custom_objects()
    if name in custom:
        return custom[name]
    if name in registry:
        return registry[name]
    if normalize is not None and normalize(name) in registry:
        return registry[normalize(name)]
    known = ", ".join(sorted(registry))
    raise UnknownObjectError(f"Unknown {kind}: {name!r}. Expected one of: {known}.")


_safe_mode: contextvars.ContextVar[bool] = contextvars.ContextVar("safe_mode", default=True)
# [bytes left, bytes allowed] while a weight budget is in force.
_weight_budget: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "weight_budget", default=None
)


def weight_budget_scope(max_bytes: int) -> contextlib.AbstractContextManager[None]:
    """Within the block, layers may create at most ``max_bytes`` of weights in all, so that
    building a model from an untrusted config fails cleanly instead of exhausting memory
    (weights are allocated from the config before the stored values are read)."""
    return _set_within(_weight_budget, [int(max_bytes), int(max_bytes)])


def weight_budget_active() -> bool:
    return _weight_budget.get() is not None


def charge_weight(nbytes: int, what: str) -> None:
    """Count ``nbytes`` of new weights against the budget of :func:`weight_budget_scope`."""
    budget = _weight_budget.get()
    if budget is None:
        return
    budget[0] -= nbytes
    if budget[0] < 0:
        raise WeightsError(
            f"{what} needs {nbytes} bytes, which takes the model's weights past the limit "
            f"of {budget[1]} bytes"
        )


def safe_mode_scope(safe_mode: bool) -> contextlib.AbstractContextManager[None]:
    """Within the block, stored Python bytecode may be loaded only if ``safe_mode`` is False."""
    return _set_within(_safe_mode, bool(safe_mode))


def in_safe_mode() -> bool:
    return _safe_mode.get()
