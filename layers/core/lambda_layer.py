"""Lambda: wraps an arbitrary function of the inputs as a layer."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from layerserve import _config
from layerserve.errors import ConfigError, ShapeError, received
from layerserve.layers.base import Layer
from layerserve.layers.core.function_code import dump_function, load_function
from layerserve.layers.tensor import KerasTensor, flatten, pack_like

_PROBE_SIZES = (2, 3)


class Lambda(Layer):
    """``function(inputs, **arguments)`` as a layer.

    Write the function with NumPy or ``layerserve.backend`` (as K). ``output_shape``
    (excluding the batch axis as a tuple, or a callable of the full input shape) is
    inferred when omitted. ``mask`` is a callable ``(inputs, mask) -> mask`` or a fixed
    mask; without it, an incoming mask is dropped.
    """

    def __init__(
        self,
        function: Callable,
        output_shape: Any = None,
        mask: Any = None,
        arguments: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not callable(function):
            raise ConfigError(
                "Expected `function` to be callable. " + received("function", function)
            )
        if (
            output_shape is not None
            and not callable(output_shape)
            and not isinstance(output_shape, (list, tuple))
        ):
            raise ConfigError(
                "In Lambda, `output_shape` must be a list, a tuple, or a "
                "function. " + received("output_shape", output_shape)
            )
        if arguments is not None and not isinstance(arguments, Mapping):
            raise ConfigError(
                "Expected `arguments` to be a dict. " + received("arguments", arguments)
            )
        self.function = function
        self._output_shape = output_shape
        self.mask = mask
        self.arguments = dict(arguments or {})
        self.supports_masking = mask is not None
        self.built = True

    def call(self, inputs: Any, training: bool = False, mask: Any = None) -> Any:
        # Keras tensors are immutable, so functions written for Keras (the docs'
        # antirectifier does ``x -= ...``) may update their argument in place: hand them
        # copies so the caller's arrays and sibling branches of a model stay intact.
        inputs = pack_like(inputs, [np.array(a, copy=True) for a in flatten(inputs)])
        kwargs = dict(self.arguments)
        accepted = _parameters(self.function)
        if "mask" in accepted:
            kwargs["mask"] = mask
        if "training" in accepted:
            kwargs["training"] = training
        return self.function(inputs, **kwargs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        if self._output_shape is None:
            return self._infer(input_shape)[0]
        if callable(self._output_shape):
            shape = self._output_shape(input_shape)
            if not isinstance(shape, (list, tuple)):
                raise ConfigError(
                    "`output_shape` function must return a tuple or a list of "
                    "tuples. " + received("output_shape", shape)
                )
            if isinstance(shape, list) and shape and isinstance(shape[0], (list, tuple)):
                return [tuple(s) for s in shape]
            return tuple(shape)
        batch = input_shape[0][0] if isinstance(input_shape, list) else input_shape[0]
        return (batch, *self._output_shape)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        if self.mask is None:
            return None
        if isinstance(flatten(inputs)[0], KerasTensor):
            return self._symbolic_mask(inputs, mask)
        if callable(self.mask):
            return self.mask(inputs, mask)
        return self.mask

    def output_dtype(self, input_dtype: str) -> str:
        return getattr(self, "_probed_dtype", None) or input_dtype

    def _symbolic_mask(self, inputs: Any, mask: Any) -> Any:
        if not callable(self.mask):
            return KerasTensor(np.shape(self.mask), "bool")
        structure = inputs if isinstance(inputs, list) else None
        shapes = [t.shape for t in flatten(inputs)]
        mask_shapes = (
            [m.shape if m is not None else None for m in flatten(mask)]
            if (mask is not None)
            else None
        )

        def run(arrays: list[np.ndarray], masks: list[Any] | None) -> Any:
            value = arrays if structure is not None else arrays[0]
            mask_value = None
            if masks is not None:
                mask_value = masks if isinstance(mask, list) else masks[0]
            return self.mask(value, mask_value)

        probed = _probe(run, shapes, [t.dtype for t in flatten(inputs)], mask_shapes)
        if probed is None:
            return None
        out_shapes, _ = probed
        if isinstance(out_shapes, list):
            return [KerasTensor(s, "bool") for s in out_shapes]
        return KerasTensor(out_shapes, "bool")

    def _infer(self, input_shape: Any) -> tuple[Any, Any]:
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        dtypes = [self.dtype] * len(shapes)

        def run(arrays: list[np.ndarray], masks: Any) -> Any:
            value = arrays if isinstance(input_shape, list) else arrays[0]
            return self.call(value)

        probed = _probe(run, [tuple(s) for s in shapes], dtypes, None)
        if probed is None:
            raise ShapeError(f"Lambda {self.name} returned None; it must return an array.")
        self._probed_dtype = probed[1]
        return probed

    def get_config(self) -> dict[str, Any]:
        function, function_type = dump_function(self.function)
        if callable(self._output_shape):
            output_shape, output_shape_type = dump_function(self._output_shape)
        else:
            output_shape_type = "raw"
            output_shape = list(self._output_shape) if self._output_shape is not None else None
        arguments = {
            k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.arguments.items()
        }
        config = {
            **super().get_config(),
            "function": function,
            "function_type": function_type,
            "output_shape": output_shape,
            "output_shape_type": output_shape_type,
            "arguments": arguments,
        }
        if self.mask is not None:
            mask, mask_type = (
                dump_function(self.mask)
                if callable(self.mask)
                else (np.asarray(self.mask).tolist(), "raw")
            )
            config["mask"], config["mask_type"] = mask, mask_type
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Lambda:
        config = dict(config)
        # tf.keras records where by-name functions were defined.
        module = config.pop("module", None)
        output_shape_module = config.pop("output_shape_module", None)
        mask_module = config.pop("mask_module", None)
        function = load_function(
            config.pop("function"), config.pop("function_type", "lambda"), module=module
        )
        output_shape = config.pop("output_shape", None)
        output_shape_type = config.pop("output_shape_type", "raw")
        if output_shape_type != "raw" and output_shape is not None:
            output_shape = load_function(
                output_shape, output_shape_type, "output_shape", module=output_shape_module
            )
        mask = config.pop("mask", None)
        mask_type = config.pop("mask_type", "raw")
        if mask is not None and mask_type != "raw":
            mask = load_function(mask, mask_type, "mask function", module=mask_module)
        arguments = {k: _restore_array(v) for k, v in (config.pop("arguments", None) or {}).items()}
        return cls(function, output_shape=output_shape, mask=mask, arguments=arguments, **config)


def _restore_array(value: Any) -> Any:
    """JSON stores array arguments as lists; Keras turns them back into float tensors, so
    numeric lists become arrays of floatx (plain numbers and other values stay as they are)."""
    if not isinstance(value, list) or not value:
        return value
    try:
        array = np.asarray(value)
    except ValueError:
        return value
    if array.dtype.kind == "f":
        return array.astype(_config.floatx())
    return array if array.dtype.kind in "iub" else value


def _parameters(function: Callable) -> set[str]:
    try:
        return set(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return set()


def _probe(
    run: Callable, shapes: list[tuple], dtypes: list[str], mask_shapes: list[Any] | None
) -> tuple[Any, Any] | None:
    """Run ``run`` on two concrete inputs whose unknown sizes differ; sizes that change
    between the runs are unknown (None) in the result."""
    results = []
    rng = np.random.default_rng(0)
    for size in _PROBE_SIZES:
        arrays = [
            rng.uniform(0.5, 1.5, [size if d is None else d for d in shape]).astype(dtype)
            for shape, dtype in zip(shapes, dtypes, strict=True)
        ]
        masks = None
        if mask_shapes is not None:
            masks = [
                None if s is None else np.ones([size if d is None else d for d in s], bool)
                for s in mask_shapes
            ]
        with np.errstate(all="ignore"):
            results.append(run(arrays, masks))
    first, second = results
    if first is None:
        return None
    if isinstance(first, (list, tuple)):
        out = [_merge(np.shape(a), np.shape(b)) for a, b in zip(first, second, strict=True)]
        return out, np.asarray(first[0]).dtype.name
    return _merge(np.shape(first), np.shape(second)), np.asarray(first).dtype.name


def _merge(first: tuple, second: tuple) -> tuple:
    if len(first) != len(second):
        raise ShapeError("Lambda output rank depends on the input size; pass `output_shape`.")
    return tuple(a if a == b else None for a, b in zip(first, second, strict=True))
