"""Typed errors raised by the layerserve library.

Each subclasses the builtin a Keras user would catch (ValueError, TypeError, ...), so
code written against Keras keeps working, while callers such as the service can map
each kind to a precise response.
"""

from __future__ import annotations


class LayerserveError(Exception):
    """Base class of every error layerserve raises on purpose."""


class ConfigError(LayerserveError, ValueError):
    """A constructor argument or a serialized config is invalid."""


class UnknownObjectError(ConfigError):
    """A name (activation, initializer, layer class, ...) is not known."""


class UnknownLayerError(UnknownObjectError):
    """A model uses layer classes (or Keras operations) layerserve does not implement.

    ``layers`` and ``operations`` list every unknown name in the model, so one error
    tells the whole story.
    """

    def __init__(self, message: str, layers: list[str], operations: list[str]) -> None:
        super().__init__(message)
        self.layers = layers
        self.operations = operations


class UnknownFunctionError(UnknownObjectError):
    """A Lambda layer names a Python function layerserve does not know (the code is not
    in the file: it must be given as a custom object)."""

    def __init__(self, message: str, function: str, module: str | None) -> None:
        super().__init__(message)
        self.function = function
        self.module = module


class ShapeError(LayerserveError, ValueError):
    """An input's rank, shape or size does not fit what a layer or model expects."""


class DTypeError(LayerserveError, TypeError):
    """An input's dtype cannot be used where it was given."""


class MaskingNotSupportedError(LayerserveError, TypeError):
    """A layer that cannot carry a mask received one."""


class WeightsError(LayerserveError, ValueError):
    """Weights do not match a layer or model (count, shape, names)."""


class ModelFormatError(LayerserveError, ValueError):
    """A model file or JSON document is corrupt or of an unknown format."""


class UnsafeDeserializationError(LayerserveError, ValueError):
    """Loading would run code stored in a file (a Lambda's bytecode)."""


class LayerCallError(LayerserveError, RuntimeError):
    """A layer failed while computing (the message names the layer and the cause)."""


class ExportError(LayerserveError, RuntimeError):
    """A layer could not be turned into ONNX nodes (the message names the layer)."""


class NotSupportedError(LayerserveError, NotImplementedError):
    """A documented Keras feature that layerserve deliberately does not provide."""


def received(name: str, value: object) -> str:
    """The tail every argument error ends with: ``Received: name=value``."""
    return f"Received: {name}={value!r}"


class UnknownArgumentError(LayerserveError, TypeError):
    """A layer was given a keyword argument it does not take."""
