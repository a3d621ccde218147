"""Design-time shapes: a layerserve or Keras model config in, the summary table out
(each layer's output shape and parameter count), built without allocating weights.

Hostile configs are refused before they cost memory or minutes: every weight is a
zero-byte broadcast view counted against ``MAX_PARAMS`` as it is created; a Lambda
without ``output_shape`` (whose shape is found by running its function on a probe
input) is refused when that probe would exceed ``MAX_PROBE_ELEMENTS``, and a request whose
probes would exceed ``MAX_PROBE_TOTAL`` in all; and configs with
more than ``MAX_LAYERS`` layers are refused before building (building a Sequential
replays its graph once per added layer)."""

from __future__ import annotations

import contextvars
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from layerserve.errors import LayerserveError
from layerserve.layers import LAYER_ALIASES, LAYER_CLASSES, KerasTensor, Lambda, Layer, Variable
from layerserve.models import Model
from layerserve.models.summary import param_totals, summary_rows
from layerserve.saving import model_from_json
from layerserve.saving.keras_json import parse_document
from layerserve.service.errors import InvalidInput, ServiceError

MAX_BODY_BYTES = 1024 * 1024
MAX_LAYERS = 500
MAX_PARAMS = 10_000_000_000
MAX_PROBE_ELEMENTS = 10_000_000
# All the probes of one request (a Sequential's build replays its graph once per added
# layer, probing its Lambdas again): about a second of NumPy.
MAX_PROBE_TOTAL = 100_000_000
# A Lambda's probe gives unknown dimensions a small size; count them generously.
PROBE_SIZE = 8
_budget: contextvars.ContextVar[_ParameterBudget | None] = contextvars.ContextVar(
    "parameter_budget", default=None
)


class _ParameterBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.probed = 0  # elements the Lambdas' probes ran on

    def take_probe(self, layer: str, elements: int) -> None:
        self.probed += elements
        if self.probed > MAX_PROBE_TOTAL:
            raise InvalidInput(
                f"the model's Lambda layers find their output shapes by running their "
                f"functions on {self.probed:,} elements in all (Lambda '{layer}' passes the "
                f"limit of {MAX_PROBE_TOTAL:,} a request); give the Lambdas explicit "
                "output_shape"
            )

    def take(self, layer: str, weight: str, shape: tuple[int, ...]) -> None:
        if any(not isinstance(d, (int, np.integer)) or d < 0 for d in shape):
            raise InvalidInput(
                f"layer '{layer}' asks for weight '{weight}' of shape {list(shape)}; "
                "dimensions must be non-negative integers"
            )
        self.used += math.prod(int(d) for d in shape)
        if self.used > self.limit:
            raise InvalidInput(
                f"the model has more than {self.limit:,} parameters (layer '{layer}' "
                f"weight '{weight}' of shape {list(shape)} brings the count to "
                f"{self.used:,}); refused before allocating anything"
            )


def _shape_only_add_weight(
    self: Layer,
    name: str,
    shape: Sequence[int],
    initializer: Any,
    regularizer: Any = None,
    constraint: Any = None,
    trainable: bool = True,
) -> Variable:
    budget = _budget.get()
    if budget is None:  # built outside summarize(): behave like the library layer
        return Layer.add_weight(self, name, shape, initializer, regularizer, constraint, trainable)
    budget.take(self.name, name, tuple(shape))
    zeros = np.zeros((), dtype=self.dtype)
    return Layer.add_weight(
        self,
        name,
        shape,
        lambda dims, dtype=None: np.broadcast_to(zeros, dims),
        regularizer,
        constraint,
        trainable,
    )


# Backend functions whose output is never larger than their input.
SIZE_SAFE_FUNCTIONS = frozenset(
    {
        "abs", "all", "any", "argmax", "argmin", "batch_flatten", "cast", "clip", "cos",
        "cumprod", "cumsum", "elu", "exp", "expand_dims", "flatten", "hard_sigmoid",
        "l2_normalize", "log", "logsumexp", "max", "mean", "min", "permute_dimensions",
        "prod", "relu", "round", "sigmoid", "sign", "sin", "softmax", "softplus", "softsign",
        "sqrt", "square", "squeeze", "std", "sum", "tanh", "transpose", "var",
    }
)  # fmt: skip


class _GuardedLambda(Lambda):
    """A Lambda that refuses to probe its function on an oversized input."""

    def compute_output_shape(self, input_shape: Any) -> Any:
        if self.get_config().get("output_shape") is None:
            self._check_probe(input_shape, "output shape")
            self._check_function()
        return super().compute_output_shape(input_shape)

    def _check_function(self) -> None:
        """Only functions whose output is no larger than their input are probed: ``tile``
        or ``repeat`` with stored arguments could ask for gigabytes from a tiny input."""
        name = getattr(self.function, "__name__", repr(self.function))
        if name not in SIZE_SAFE_FUNCTIONS or self.arguments:
            raise InvalidInput(
                f"Lambda layer '{self.name}' has no output_shape and calls {name!r} with "
                f"arguments {sorted(self.arguments)}; shape checks probe only "
                f"{', '.join(sorted(SIZE_SAFE_FUNCTIONS))} without arguments: give the "
                "Lambda an explicit output_shape"
            )

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        tensors = inputs if isinstance(inputs, list) else [inputs]
        if callable(self.mask) and tensors and isinstance(tensors[0], KerasTensor):
            self._check_probe([t.shape for t in tensors], "mask")
        return super().compute_mask(inputs, mask)

    def _check_probe(self, input_shape: Any, what: str) -> None:
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        elements = sum(math.prod(PROBE_SIZE if d is None else d for d in s) for s in shapes)
        if elements > MAX_PROBE_ELEMENTS:
            raise InvalidInput(
                f"Lambda layer '{self.name}' finds its {what} by running its function on "
                f"an input of shape {[list(s) for s in shapes]} ({elements:,} elements, "
                f"over the limit of {MAX_PROBE_ELEMENTS:,}); give the Lambda an explicit "
                "output_shape"
            )
        budget = _budget.get()
        if budget is not None:
            budget.take_probe(self.name, elements)


def _shape_only_classes() -> dict[str, type[Layer]]:
    """Subclasses with the library names (the summary shows ``class_name``) whose
    weights are broadcast zeros; registered as custom objects they replace the
    library layers for one build."""
    classes: dict[str, type[Layer]] = {}
    for name, cls in LAYER_CLASSES.items():
        base = _GuardedLambda if cls is Lambda else cls
        classes[name] = type(cls.__name__, (base,), {"add_weight": _shape_only_add_weight})
    for alias, name in LAYER_ALIASES.items():
        classes[alias] = classes[name]
    return classes


_CLASSES = _shape_only_classes()


def parse_request(document: Any) -> tuple[Any, list[int | None] | None]:
    """``{"model": config (object or JSON text), "input_shape"?: [null, 784]}``, or the
    config alone (a ``config.json`` sent as it is)."""
    if isinstance(document, dict) and "model" not in document and "class_name" in document:
        return document, None
    if not isinstance(document, dict) or "model" not in document:
        raise InvalidInput(
            'the request must be a model config, or a JSON object like {"model": <model '
            'config>, "input_shape": [null, 784]} ("input_shape" is optional)'
        )
    unknown = sorted(set(document) - {"model", "input_shape"})
    if unknown:
        raise InvalidInput(f"unknown request fields {unknown}; expected 'model', 'input_shape'")
    config = document["model"]
    if not isinstance(config, (dict, str)):
        raise InvalidInput(
            "'model' must be a model config: the object (or the JSON text) that "
            f"model.to_json() writes, got {type(config).__name__}"
        )
    shape = document.get("input_shape")
    if shape is not None and not (
        isinstance(shape, list) and shape and all(d is None or _positive(d) for d in shape)
    ):
        raise InvalidInput(
            "'input_shape' must be a list of positive integers or null (unknown size), "
            f"including the batch axis, e.g. [null, 784]; got {shape!r}"
        )
    return config, shape


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def summarize(config: Any, input_shape: list[int | None] | None = None) -> dict[str, Any]:
    """The summary table of ``config`` as JSON-ready data. CPU-bound: run it off the
    event loop."""
    try:
        document = parse_document(config)
    except (LayerserveError, ServiceError):
        raise
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidInput(f"the model config is not valid JSON: {exc}") from exc
    _check_layer_count(document)
    return _summary(_build(document, input_shape))


def _check_layer_count(document: Any) -> None:
    count, stack = 0, [document]
    while stack:  # iterative: a hostile config may nest deeper than Python recursion
        item = stack.pop()
        if isinstance(item, dict):
            layers = item.get("layers")
            if isinstance(layers, list):
                count += sum(1 for entry in layers if isinstance(entry, dict))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    if count > MAX_LAYERS:
        raise InvalidInput(
            f"the model config has {count} layers, over the limit of {MAX_LAYERS} "
            "for design-time shape checks"
        )


def _build(document: Any, input_shape: list[int | None] | None) -> Model:
    budget = _ParameterBudget(MAX_PARAMS)
    token = _budget.set(budget)
    try:
        model = model_from_json(document, custom_objects=_CLASSES, safe_mode=True)
        if not isinstance(model, Model):
            raise InvalidInput(
                f"the config describes a single {type(model).__name__} layer; "
                "send a Sequential or functional model config"
            )
        _apply_input_shape(model, input_shape)
    except (LayerserveError, ServiceError):
        raise
    except RecursionError as exc:
        raise InvalidInput("the model config is nested too deeply to build") from exc
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise InvalidInput(
            f"the model config cannot be built: {type(exc).__name__}: {exc}"[:1000]
        ) from exc
    except MemoryError as exc:
        raise InvalidInput("the model config needs more memory than this server allows") from exc
    finally:
        _budget.reset(token)
    return model


def _apply_input_shape(model: Model, input_shape: list[int | None] | None) -> None:
    if not model.inputs:
        if input_shape is None:
            raise InvalidInput(
                "the config declares no input shape; pass 'input_shape' with the batch "
                "axis first, e.g. [null, 784]"
            )
        model.build(tuple(input_shape))
        return
    if input_shape is None:
        return
    declared = [list(t.shape) for t in model.inputs]
    if declared != [list(input_shape)]:
        shown = declared[0] if len(declared) == 1 else declared
        raise InvalidInput(
            f"the config already declares the input shape {shown}, which differs from "
            f"input_shape {list(input_shape)}; leave 'input_shape' out or change the config"
        )


def _summary(model: Model) -> dict[str, Any]:
    trainable, non_trainable = param_totals(model)
    return {
        "name": model.name,
        "layers": [
            {
                "name": row.name,
                "class_name": row.class_name,
                "output_shape": _jsonable_shape(row.output_shape),
                "params": int(row.params),
                "connected_to": list(row.connected_to),
            }
            for row in summary_rows(model)
        ],
        "total_params": int(trainable + non_trainable),
        "trainable_params": int(trainable),
        "non_trainable_params": int(non_trainable),
        "inputs": [
            {"name": name, "shape": _jsonable_shape(t.shape), "dtype": str(t.dtype)}
            for name, t in zip(model.input_names, model.inputs, strict=True)
        ],
        "outputs": [
            {"name": name, "shape": _jsonable_shape(t.shape), "dtype": str(t.dtype)}
            for name, t in zip(model.output_names, model.outputs, strict=True)
        ],
    }


def _jsonable_shape(shape: Any) -> Any:
    if isinstance(shape, str):
        return shape  # "multiple": the layer is called with different shapes
    if shape and isinstance(shape[0], (list, tuple)):
        return [_jsonable_shape(s) for s in shape]
    return [None if d is None else int(d) for d in shape]
