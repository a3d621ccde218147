"""The base Layer: every layer fills in the same hooks, this class does the bookkeeping.

Subclasses override ``build(input_shape)`` to create weights, ``call(inputs, training,
mask)`` for the NumPy math, ``compute_output_shape(input_shape)``, optionally
``compute_mask(inputs, mask)``, and ``get_config()``. Calling a layer on NumPy arrays
computes eagerly; calling it on KerasTensors records a node of a model graph.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from layerserve import _config, regularizers
from layerserve.errors import (
    ConfigError,
    DTypeError,
    MaskingNotSupportedError,
    NotSupportedError,
    UnknownArgumentError,
    WeightsError,
    received,
)
from layerserve.layers import legacy_interfaces
from layerserve.layers.input_spec import InputSpec, check_input_specs
from layerserve.layers.tensor import (
    NOT_GIVEN,
    KerasTensor,
    Node,
    Shape,
    flatten,
    is_symbolic,
    pack_like,
)
from layerserve.serialization import (
    charge_weight,
    in_keras_document,
    is_tf_keras_file,
    semantics_version,
    serialize,
)

_name_counts: defaultdict[str, int] = defaultdict(int)


# tf.keras 2.4 (the first with Keras's own version number, "2.4.0") is the oldest writer
# whose layers cast float inputs to their dtype; Keras 2.2 and TF1's tf.keras did not.
AUTOCAST_SINCE = (2, 4, 0)


def unique_name(prefix: str) -> str:
    """Keras 2.2 default names: ``dense_1``, ``dense_2``, ... counted per prefix."""
    _name_counts[prefix] += 1
    return f"{prefix}_{_name_counts[prefix]}"


def reset_names() -> None:
    _name_counts.clear()


def snake_case(name: str) -> str:
    first = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", first).lower()


def drops_imaginary(array: np.ndarray, dtype: Any) -> bool:
    """Complex values for a real ``dtype``: a cast would keep their real parts alone."""
    return array.dtype.kind == "c" and np.dtype(dtype).kind != "c"


def normalize_dtype(dtype: Any) -> str | None:
    """A dtype name from a string, a NumPy dtype or a Keras 3 DTypePolicy config."""
    if dtype is None:
        return None
    if isinstance(dtype, dict):
        dtype = _policy_name(dtype)
    name = str(dtype.name if isinstance(dtype, np.dtype) else dtype)
    if name.startswith("mixed_"):
        # A mixed policy keeps float32 variables; the reference computes in float32 too.
        warnings.warn(
            f"The Keras dtype policy {name!r} computes in {name.removeprefix('mixed_')}; "
            "layerserve computes in float32, so its outputs differ from Keras's by that "
            "precision's rounding (they are the float32 results of the same weights).",
            UserWarning,
            stacklevel=2,
        )
        return "float32"
    try:
        return np.dtype(name).name
    except TypeError as exc:
        raise ConfigError(f"Expected a NumPy dtype name. {received('dtype', dtype)}") from exc


_POLICY_CLASSES = ("DTypePolicy", "FloatDTypePolicy", "Policy")  # Policy: tf.keras's
_POLICY_KEYS = {"module", "class_name", "config", "registered_name", "shared_object_id"}


def _policy_name(policy: dict[str, Any]) -> str:
    """The dtype a serialized dtype policy names; other policies (quantized ones) and
    unknown keys are refused."""
    config = policy.get("config")
    if (
        policy.get("class_name") not in _POLICY_CLASSES
        or set(policy) - _POLICY_KEYS
        or not isinstance(config, dict)
        or set(config) != {"name"}
    ):
        raise ConfigError(
            "Expected a dtype policy {'class_name': 'DTypePolicy', 'config': {'name': ...}} "
            f"(or FloatDTypePolicy, tf.keras's Policy). {received('dtype', policy)}"[:400]
        )
    return config["name"]


def to_shape(value: Any, argument: str) -> tuple[int | None, ...]:
    if isinstance(value, int):
        value = (value,)
    try:
        return tuple(None if d is None else int(d) for d in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"Expected `{argument}` to be a tuple of integers or None. {received(argument, value)}"
        ) from exc


def activity_loss_is_batch_mean(version: tuple[int, int, int]) -> bool:
    """tf.keras 2.4+ and Keras 3.14+ divide activity losses by the batch size."""
    return (2, 4, 0) <= version < (3, 0, 0) or version >= (3, 14, 0)


class Variable:
    """A named weight with its regularizer and constraint."""

    def __init__(
        self,
        name: str,
        value: np.ndarray,
        trainable: bool = True,
        regularizer: Any = None,
        constraint: Any = None,
    ) -> None:
        self.name = name
        self.value = value
        self.trainable = trainable
        self.regularizer = regularizer
        self.constraint = constraint

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)

    def numpy(self) -> np.ndarray:
        return self.value.copy()

    def __repr__(self) -> str:
        return f"<Variable {self.name} shape={self.shape} dtype={self.value.dtype}>"


class Layer:
    """Base class of every layer (see the module docstring for the contract)."""

    supports_masking = False
    # Layers with weights compute in their dtype and cast numeric inputs to it.
    casts_inputs = False
    # Layers that refuse integer and boolean inputs: Keras computes them by rules of each
    # backend's function (float results on some, the integer dtype kept on others).
    float_inputs_only = False
    # tf.keras 2.4+ and Keras 3 cast a float input to a float layer's dtype before the call
    # (a float16 model input reaches a float32 Softmax as float32); integers stay.
    autocasts = True
    name_prefix: str | None = None
    # Keras 3 ``.weights.h5`` sub-objects of this layer in weight order, where their names
    # do not sort that way (wrappers, attention); the loader reads the others sorted.
    keras3_weight_entries: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__name__ in legacy_interfaces.INTERFACES:
            cls.__init__ = legacy_interfaces.legacy_init(cls.__name__, cls.__init__)

    def __init__(
        self,
        *,
        name: str | None = None,
        trainable: bool = True,
        dtype: Any = None,
        input_shape: Sequence[int | None] | None = None,
        batch_input_shape: Sequence[int | None] | None = None,
        batch_size: int | None = None,
        weights: list[np.ndarray] | None = None,
        activity_regularizer: Any = None,
        input_dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            unknown = ", ".join(sorted(kwargs))
            given = ", ".join(f"{key}={kwargs[key]!r}" for key in sorted(kwargs))
            raise UnknownArgumentError(
                f"Keyword argument not understood by {type(self).__name__}: {unknown}. "
                f"Received: {given}"
            )
        if name is not None and not isinstance(name, str):
            raise ConfigError(
                f"{type(self).__name__}: expected the layer's name to be a string. "
                + received("name", name)
            )
        self.name = name or unique_name(self.name_prefix or snake_case(type(self).__name__))
        self.trainable = bool(trainable)
        explicit_dtype = normalize_dtype(dtype if dtype is not None else input_dtype)
        self.dtype = explicit_dtype or _config.floatx()
        self._dtype_in_config = explicit_dtype is not None
        if batch_input_shape is not None:
            self.batch_input_shape = to_shape(batch_input_shape, "batch_input_shape")
            self._dtype_in_config = True
        elif input_shape is not None:
            self.batch_input_shape = (batch_size, *to_shape(input_shape, "input_shape"))
            self._dtype_in_config = True
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.keras_version = semantics_version()
        # made from a document Keras wrote, not built in layerserve
        self.read_from_file = in_keras_document()
        # tf.keras bundled with TensorFlow 1.13-2.3 wrote "2.x-tf" (its own semantics)
        self.tf_keras_file = is_tf_keras_file()
        self.input_spec: InputSpec | list[InputSpec] | None = None
        self.built = False
        self._initial_weights = weights
        self._variables: list[Variable] = []
        self._activity_losses: list[float] = []
        self.inbound_nodes: list[Node] = []

    # ---- hooks for subclasses -------------------------------------------------------
    def build(self, input_shape: Any) -> None:
        self.built = True

    def call(self, inputs: Any, training: bool = False, mask: Any = None) -> Any:
        return inputs

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def input_value_range(self) -> tuple[int, int] | None:
        """``(low, high)`` when the layer reads its input as indices in ``[low, high)``
        (Embedding); sample inputs for parity checks are drawn from that range."""
        return None

    def accepted_input_range(self) -> tuple[int, int] | None:
        """``(low, high)``: the index values (truncated toward zero) the layer accepts,
        where it reads its input as indices; the service refuses others up front."""
        return None

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        if mask is None or all(m is None for m in flatten(mask)):
            return None
        if not self.supports_masking:
            if self.keras_version >= (3, 0, 0) and self._returns_its_input(inputs):
                raise NotSupportedError(
                    f"Layer {self.name!r} ({type(self).__name__}) returns its input unchanged "
                    "here, on a masked input: Keras 3 keeps the mask through it on JAX (the "
                    "very tensor comes back) and drops it on TensorFlow, so the file's numbers "
                    "depend on the backend that ran it. Expected a layer that changes its "
                    f"input, or none. Received: input shape {self._first_shape(inputs)}"
                )
            if self.keras_version >= (2, 4, 0):
                return self._drop_mask()
            raise MaskingNotSupportedError(
                f"Layer {self.name} ({type(self).__name__}) does not support masking, but "
                "was passed an input mask. Put it after a layer that consumes the mask "
                "(such as LSTM), or remove the Masking layer."
            )
        return mask

    def compute_output_shape_and_mask(self, inputs: Any, mask: Any = None) -> tuple[Any, Any]:
        """``compute_output_shape`` and ``compute_mask`` of symbolic ``inputs`` (models
        answer both from one pass through their graph)."""
        shapes = pack_like(inputs, [t.shape for t in flatten(inputs)])
        return self.compute_output_shape(shapes), self.compute_mask(inputs, mask)

    def returns_its_input(self, input_shape: tuple) -> bool:
        """Whether a call on an input of ``input_shape`` returns it as it is (a Reshape to
        the same shape, a Cropping of nothing): Keras 3 on JAX then hands back the very
        tensor, its mask with it."""
        return False

    @staticmethod
    def _first_shape(inputs: Any) -> tuple:
        first = flatten(inputs)[0]
        return tuple(first.shape)

    def _returns_its_input(self, inputs: Any) -> bool:
        return bool(flatten(inputs)) and self.returns_its_input(self._first_shape(inputs))

    def _drop_mask(self) -> None:
        """tf.keras 2.x drops the mask silently; Keras 3 warns, then drops it."""
        if self.keras_version >= (3, 0, 0):
            warnings.warn(
                f"Layer {self.name!r} ({type(self).__name__}) does not support masking; "
                "the incoming mask is dropped, as Keras 3 does.",
                UserWarning,
                stacklevel=3,
            )

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"name": self.name, "trainable": self.trainable}
        if hasattr(self, "batch_input_shape"):
            config["batch_input_shape"] = list(self.batch_input_shape)
        if self._dtype_in_config:
            config["dtype"] = self.dtype
        if self.activity_regularizer is not None and not self._owns_activity_regularizer():
            config["activity_regularizer"] = serialize(self.activity_regularizer)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        return cls(**config)

    def _owns_activity_regularizer(self) -> bool:
        return False

    # ---- weights ---------------------------------------------------------------------
    def add_weight(
        self,
        name: str,
        shape: Sequence[int],
        initializer: Any,
        regularizer: Any = None,
        constraint: Any = None,
        trainable: bool = True,
    ) -> Variable:
        shape = tuple(shape)
        nbytes = math.prod(max(int(d), 0) for d in shape) * np.dtype(self.dtype).itemsize
        charge_weight(nbytes, f"weight '{name}' {shape} of layer '{self.name}'")
        value = np.asarray(initializer(shape, dtype=self.dtype), dtype=self.dtype)
        variable = Variable(name, value, trainable, regularizer, constraint)
        self._variables.append(variable)
        return variable

    @property
    def trainable_weights(self) -> list[Variable]:
        if not self.trainable:
            return []
        return [v for v in self._all_variables() if v.trainable]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        if not self.trainable:
            return self._all_variables()
        return [v for v in self._all_variables() if not v.trainable]

    @property
    def weights(self) -> list[Variable]:
        return self.trainable_weights + self.non_trainable_weights

    def _all_variables(self) -> list[Variable]:
        return list(self._variables)

    def get_weights(self) -> list[np.ndarray]:
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        variables = self.weights
        if len(weights) != len(variables):
            raise WeightsError(
                f'You called `set_weights(weights)` on layer "{self.name}" with a weight list '
                f"of length {len(weights)}, but the layer was expecting {len(variables)} "
                f"weights. Provided weights: {_describe(weights)}"
            )
        arrays = [np.asarray(w) for w in weights]
        for variable, array in zip(variables, arrays, strict=True):
            if tuple(array.shape) != variable.shape:
                raise WeightsError(
                    f"Layer weight shape {variable.shape} not compatible with provided weight "
                    f"shape {tuple(array.shape)} (layer {self.name}, weight {variable.name})"
                )
            target = variable.value.dtype
            if array.dtype.kind not in "biuf" and not (array.dtype.kind == target.kind == "c"):
                # strings, objects, records; complex values would keep their real parts
                raise WeightsError(
                    f"Layer {self.name}, weight {variable.name}: expected numbers for its "
                    f"{target} values. Received: dtype={array.dtype}"
                )
        for variable, array in zip(variables, arrays, strict=True):
            variable.value = array.astype(variable.value.dtype, copy=True)

    def count_params(self) -> int:
        if not self.built:
            raise ConfigError(
                f"You tried to call `count_params` on {self.name}, but the layer isn't built. "
                "Build it first by calling it on an input or with `build(batch_input_shape)`."
            )
        return int(sum(int(np.prod(v.shape)) for v in self.weights)) + self.params_beyond_weights

    @property
    def params_beyond_weights(self) -> int:
        """Parameters Keras counts that the weights held here do not (a layer whose weights
        are kept in another layout: CuDNNLSTM's two biases summed into one)."""
        return sum(layer.params_beyond_weights for layer in self._sublayers())

    def _sublayers(self) -> list[Layer]:
        """The layers this one holds (a wrapper's, a model's): their counts are its own."""
        return []

    def apply_constraints(self) -> None:
        """Project every constrained weight, as Keras does after an optimizer step."""
        for variable in self._all_variables():
            if variable.constraint is not None:
                variable.value = np.asarray(
                    variable.constraint(variable.value), dtype=variable.value.dtype
                )

    @property
    def losses(self) -> list[float]:
        """Weight-regularizer penalties plus the activity penalty of the last call."""
        penalties = [
            float(v.regularizer(v.value))
            for v in self._all_variables()
            if v.regularizer is not None
        ]
        return penalties + list(self._activity_losses)

    # ---- calling --------------------------------------------------------------------
    def __call__(self, inputs: Any, training: bool | None = None, mask: Any = NOT_GIVEN) -> Any:
        """Eager on arrays; on KerasTensors, records a node. ``mask`` overrides the masks
        the inputs carry (``mask=None``: the layer sees no mask)."""
        if is_symbolic(inputs):
            return self._call_symbolic(inputs, training, mask)
        outputs, _ = self.run(
            inputs, training=bool(training), mask=None if mask is NOT_GIVEN else mask
        )
        return outputs

    def run(
        self,
        inputs: Any,
        training: bool = False,
        mask: Any = None,
        previous_mask: Any = NOT_GIVEN,
    ) -> tuple[Any, Any]:
        """Eager call returning ``(outputs, output_mask)``; models call this per node.
        ``mask`` goes to ``call``; the output mask is computed from ``previous_mask``
        (default: ``mask``)."""
        arrays = pack_like(inputs, [self._to_array(v) for v in flatten(inputs)])
        shapes = pack_like(arrays, [tuple(a.shape) for a in flatten(arrays)])
        self._maybe_build(shapes)
        flat_shapes = [tuple(a.shape) for a in flatten(arrays)]
        check_input_specs(self.name, self._specs_for(len(flat_shapes)), flat_shapes)
        outputs = self.call(arrays, training=training, mask=mask)
        output_mask = self.compute_mask(
            arrays, mask if previous_mask is NOT_GIVEN else previous_mask
        )
        self._record_activity_loss(outputs)
        return outputs, output_mask

    def _check_float_input(self, dtype: Any) -> None:
        if self.float_inputs_only and np.dtype(dtype).kind in "biu":
            raise DTypeError(
                f"Layer {self.name!r} ({type(self).__name__}): expected a float input; Keras "
                "computes activations of integer tensors by each backend's own rules. Cast "
                f"the input to float first. Received: dtype={np.dtype(dtype)}"
            )

    def _to_array(self, value: Any) -> np.ndarray:
        array = np.asarray(value)
        self._check_float_input(array.dtype)
        if array.dtype.kind in "OUSV" or (self.casts_inputs and drops_imaginary(array, self.dtype)):
            raise DTypeError(
                f"Layer {self.name} expects real numeric input of dtype {self.dtype}. "
                f"Received: dtype={array.dtype}"
            )
        call_dtype = self.call_dtype(array.dtype)
        if array.dtype != call_dtype:
            array = array.astype(call_dtype)
        return array

    def call_dtype(self, input_dtype: Any) -> np.dtype:
        """The dtype an input of ``input_dtype`` has inside the call: the layer's own for
        layers with weights (every numeric input) and, from tf.keras 2.4 on, for float
        inputs of any layer whose dtype is a float (Keras's autocast)."""
        given, own = np.dtype(input_dtype), np.dtype(self.dtype)
        if given == own:
            return given
        if self.casts_inputs:
            return own
        if (
            self.autocasts
            and given.kind == own.kind == "f"
            and self.keras_version >= AUTOCAST_SINCE
        ):
            return own
        return given

    def _specs_for(self, count: int) -> list[InputSpec] | None:
        """The input specs of a call on ``count`` tensors (layers whose calls take a
        variable number of tensors override this)."""
        return self._specs()

    def _specs(self) -> list[InputSpec] | None:
        if self.input_spec is None:
            return None
        return self.input_spec if isinstance(self.input_spec, list) else [self.input_spec]

    def _maybe_build(self, input_shape: Any) -> None:
        if self.built:
            return
        shape_list = _shape_list(input_shape)
        check_input_specs(self.name, self._specs_for(len(shape_list)), shape_list)
        self.build(input_shape)
        self.built = True
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None

    def _record_activity_loss(self, outputs: Any) -> None:
        self._activity_losses = []
        if self.activity_regularizer is None:
            return
        for output in flatten(outputs):
            loss = float(self.activity_regularizer(output))
            if activity_loss_is_batch_mean(self.keras_version) and np.ndim(output) > 0:
                batch = output.shape[0]
                loss = loss / batch if batch else 0.0
            self._activity_losses.append(loss)

    def _call_symbolic(self, inputs: Any, training: bool | None, mask: Any) -> Any:
        tensors = flatten(inputs)
        if not all(isinstance(t, KerasTensor) for t in tensors):
            raise ConfigError(
                f"Layer {self.name} was called on a mix of symbolic tensors and arrays. "
                "Wrap constants in the layer's function or pass them as `arguments`."
            )
        for tensor in tensors:
            self._check_float_input(tensor.dtype)
        shapes = pack_like(inputs, [t.shape for t in tensors])
        self._maybe_build(shapes)
        check_input_specs(self.name, self._specs_for(len(tensors)), [t.shape for t in tensors])
        propagated = pack_like(inputs, [t.mask for t in tensors])
        if all(m is None for m in flatten(propagated)):
            propagated = None
        if mask is not NOT_GIVEN:
            _check_symbolic_mask(self.name, mask)
        node = Node(self, list(tensors), [], inputs, call_masks=mask)
        _, previous_mask = node.masks_for_call(propagated, lambda tensor: tensor)
        out_shapes, out_mask = self.compute_output_shape_and_mask(inputs, previous_mask)
        return self._record_node(node, out_shapes, out_mask, training)

    def _record_node(
        self, node: Node, out_shapes: Any, out_mask: Any, training: bool | None
    ) -> Any:
        tensors = node.inputs
        multiple = isinstance(out_shapes, list)
        shape_list = out_shapes if multiple else [out_shapes]
        if isinstance(out_mask, (list, tuple)):
            masks = list(out_mask)
        else:
            masks = [out_mask] * len(shape_list)
        dtype = self.output_dtype(self.call_dtype(tensors[0].dtype).name if tensors else self.dtype)
        node_index = len(self.inbound_nodes)
        node.outputs = [
            KerasTensor(
                shape,
                dtype,
                name=self.name if i == 0 else f"{self.name}_{i}",
                mask=_symbolic_mask(m),
                history=(self, node_index, i),
            )
            for i, (shape, m) in enumerate(zip(shape_list, masks, strict=True))
        ]
        node.call_kwargs = {} if training is None else {"training": bool(training)}
        self.inbound_nodes.append(node)
        return node.outputs if multiple else node.outputs[0]

    def output_dtype(self, input_dtype: str) -> str:
        return self.dtype if self.casts_inputs else input_dtype

    # ---- introspection -------------------------------------------------------------
    @property
    def input_shape(self) -> Any:
        return self._node_attribute("input")

    @property
    def output_shape(self) -> Any:
        return self._node_attribute("output")

    def _node_attribute(self, which: str) -> Any:
        if not self.inbound_nodes:
            raise ConfigError(
                f"The layer {self.name} has never been called on a symbolic input and thus "
                f"has no defined {which} shape."
            )
        shapes = {_node_shape(node, which) for node in self.inbound_nodes}
        if len(shapes) > 1:
            raise ConfigError(
                f"The layer {self.name} has multiple inbound nodes with different {which} "
                f"shapes; ask the node you mean."
            )
        return _unfreeze(shapes.pop())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"


def _check_symbolic_mask(layer_name: str, mask: Any) -> None:
    for leaf in flatten(mask):
        if leaf is not None and not isinstance(leaf, KerasTensor):
            raise ConfigError(
                f"Layer {layer_name} was called on symbolic inputs with a concrete `mask`; "
                f"pass a boolean tensor of the model instead. Received: mask={leaf!r}"[:400]
            )


def _symbolic_mask(mask: Any) -> KerasTensor | None:
    if mask is None or isinstance(mask, KerasTensor):
        return mask
    raise ConfigError("A symbolic call produced a concrete mask; compute_mask must stay symbolic.")


def _node_shape(node: Node, which: str) -> Any:
    tensors = node.inputs if which == "input" else node.outputs
    if which == "input" and not isinstance(node.input_structure, (list, tuple)):
        return tensors[0].shape if tensors else ()
    if len(tensors) == 1 and which == "output":
        return tensors[0].shape
    return tuple(t.shape for t in tensors)


def _unfreeze(shape: Any) -> Any:
    if shape and isinstance(shape[0], tuple):
        return list(shape)
    return shape


def _shape_list(shapes: Any) -> list[Shape]:
    if isinstance(shapes, list):
        return [tuple(s) for s in shapes]
    return [tuple(shapes)]


def _describe(weights: Sequence[Any]) -> str:
    return "[" + ", ".join(str(tuple(np.shape(w))) for w in weights) + "]"
