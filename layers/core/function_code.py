"""Storing Python functions in configs the way Keras does (marshalled bytecode).

Loading bytecode runs code from a file, so :func:`load_function` refuses unless the
caller left safe mode (``safe_mode=False``). Marshal data only loads on the Python
minor version that wrote it.
"""

from __future__ import annotations

import codecs
import marshal
import types
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from layerserve import backend
from layerserve.errors import ModelFormatError, UnknownFunctionError, UnsafeDeserializationError
from layerserve.serialization import custom_objects, in_safe_mode

UNSAFE_MESSAGE = (
    "Requested the deserialization of a Lambda layer whose function is stored as Python "
    "bytecode. Loading it would run code from the file. Only do this for files you trust, "
    "by passing safe_mode=False; otherwise rebuild the Lambda in code and load the weights."
)


def dump_function(function: Callable) -> tuple[list[Any], str]:
    """``(value, function_type)`` for a Keras 2 config: bytecode for Python functions."""
    if isinstance(function, types.FunctionType):
        code = codecs.encode(marshal.dumps(function.__code__), "base64").decode("ascii")
        closure = None
        if function.__closure__:
            closure = tuple(cell.cell_contents for cell in function.__closure__)
        return [code, function.__defaults__, closure], "lambda"
    return getattr(function, "__name__", repr(function)), "function"


def load_function(
    value: Any, function_type: str, what: str = "function", module: str | None = None
) -> Callable:
    """Inverse of :func:`dump_function`, plus the Keras 3 ``__lambda__`` form. ``module``
    is where a by-name function was defined (tf.keras and Keras 3 record it)."""
    if function_type == "function":
        return find_function(value, what, module)
    if in_safe_mode():
        raise UnsafeDeserializationError(UNSAFE_MESSAGE)
    if isinstance(value, Mapping):
        code, defaults, closure = value.get("code"), value.get("defaults"), value.get("closure")
    elif isinstance(value, (list, tuple)) and len(value) == 3:
        code, defaults, closure = value
    else:
        raise ModelFormatError(
            f"Expected the stored {what} as [code, defaults, closure]. "
            f"Received: {type(value).__name__}"
        )
    try:
        raw = codecs.decode(str(code).encode("ascii"), "base64")
        code_object = marshal.loads(raw)
    except (ValueError, EOFError, TypeError) as exc:
        raise ModelFormatError(
            f"The stored {what} bytecode cannot be read by this Python ({exc}). Marshalled "
            "code only loads on the Python version that saved it."
        ) from exc
    cells = tuple(types.CellType(v) for v in closure) if closure else None
    return types.FunctionType(
        code_object,
        function_globals(),
        code_object.co_name,
        tuple(defaults) if defaults else None,
        cells,
    )


def function_globals() -> dict[str, Any]:
    """Names a stored Keras function may use: the backend as K, NumPy, custom objects."""
    return {"K": backend, "backend": backend, "np": np, "numpy": np, **custom_objects()}


# Backend functions that change process-wide settings: a stored config never calls them.
_SETTERS = frozenset({"set_epsilon", "set_floatx", "set_image_data_format", "reload_settings"})


# Modules whose functions are the Keras backend functions layerserve implements (K).
_KERAS_MODULES = ("keras", "tf_keras", "tensorflow.keras", "tensorflow.python.keras")


def find_function(name: Any, what: str, module: str | None = None) -> Callable:
    """A function stored by name: the user's custom objects first, then, for functions of
    the Keras backend (no module recorded, as in Keras 2.2, or a Keras module), the
    backend function of that name. A name from any other module (``__main__``, a user's
    package, NumPy, TensorFlow) is never guessed."""
    if isinstance(name, Mapping):  # Keras 3: {"module", "class_name": "function", "config"}
        module = name.get("module", module)
        name = name.get("config")
    name = str(name)
    found = custom_objects().get(name)
    from_keras = (
        module is None
        or str(module).split(".")[0] in _KERAS_MODULES
        or any(str(module).startswith(prefix + ".") for prefix in _KERAS_MODULES)
    )
    if found is None and from_keras and name in backend.__all__ and name not in _SETTERS:
        found = getattr(backend, name)
    if not callable(found):
        where = f" from module {module!r}" if module else ""
        raise UnknownFunctionError(
            f"Unknown {what}: {name!r}{where}. Its code is not stored in the model file; "
            "pass it in `custom_objects` when loading the model.",
            name,
            module,
        )
    return found
