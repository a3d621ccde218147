"""The functional Model: a graph of layers from ``Input()`` tensors to outputs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from layerserve import __version__
from layerserve.errors import ConfigError, DTypeError, ShapeError, received
from layerserve.layers.base import Layer, Variable, drops_imaginary, unique_name
from layerserve.layers.core.input_layer import InputLayer
from layerserve.layers.rnn.nested import keras3_entries_under, keras3_keys
from layerserve.layers.tensor import NOT_GIVEN, KerasTensor, Node, flatten, pack_like
from layerserve.models import graph
from layerserve.models.mask_removal import remove_masks_as_keras_runs
from layerserve.saving.keras_json import LIST_OF_ONE
from layerserve.serialization import version_string


class Model(Layer):
    """``Model(inputs, outputs)``: several inputs and outputs, shared layers, nesting."""

    supports_masking = True

    def __init__(
        self, inputs: Any = None, outputs: Any = None, name: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(name=name or unique_name(self._default_prefix()), **kwargs)
        self._nodes: list[Node] = []
        self._layers: list[Layer] = []
        self.inputs: list[KerasTensor] = []
        self.outputs: list[KerasTensor] = []
        if inputs is not None or outputs is not None:
            if inputs is None or outputs is None:
                raise ConfigError("A Model needs both `inputs` and `outputs`.")
            self._init_graph(inputs, outputs)

    @classmethod
    def _default_prefix(cls) -> str:
        return "model"

    # ---- graph ---------------------------------------------------------------------
    def _init_graph(self, inputs: Any, outputs: Any) -> None:
        # Dicts of inputs or outputs (Keras 3, tf.keras) flatten by their sorted keys, as
        # keras.tree and tf.nest flatten them, and as a file's graph lists them.
        inputs, outputs = _by_sorted_key(inputs), _by_sorted_key(outputs)
        # As in Keras 2, a one-element list of inputs or outputs means a single tensor.
        self._inputs_are_list = len(flatten(inputs)) > 1
        self._outputs_are_list = len(flatten(outputs)) > 1
        self.inputs = list(flatten(inputs))
        self.outputs = list(flatten(outputs))
        for tensor in self.inputs:
            if (
                not isinstance(tensor, KerasTensor)
                or tensor.history is None
                or not isinstance(tensor.history[0], InputLayer)
            ):
                raise ConfigError(
                    "Model inputs must come from `Input()` (an InputLayer). "
                    + received("inputs", tensor)
                )
        for tensor in self.outputs:
            if not isinstance(tensor, KerasTensor):
                raise ConfigError(
                    "Model outputs must be symbolic tensors returned by layers. "
                    + received("outputs", tensor)
                )
        self._nodes = graph.topological_nodes(self.inputs, self.outputs)
        if remove_masks_as_keras_runs(self._nodes):
            # Keras 3 MultiHeadAttention removes its inputs' masks for the layers after it.
            self._nodes = graph.topological_nodes(self.inputs, self.outputs)
        self._layers = graph.keras_layer_order(self._nodes, self.outputs)
        names = [layer.name for layer in self._layers]
        for layer_name in names:
            if names.count(layer_name) > 1:
                raise ConfigError(
                    f'The name "{layer_name}" is used {names.count(layer_name)} '
                    "times in the model. All layer names should be unique."
                )
        self.input_layers = [t.history[0] for t in self.inputs]
        self.built = True

    def remove_input_masks_as_keras_runs(self, input_masks: dict[int, Any]) -> bool:
        """Rewire the graph for the masks an outer model sets on its inputs (by id of the
        input tensor) when it calls this model nested: Keras 3's attention layers remove
        them for the layers after them (see :mod:`layerserve.models.mask_removal`).
        True if it was rewired."""
        if not remove_masks_as_keras_runs(self._nodes, input_masks):
            return False
        self._nodes = graph.topological_nodes(self.inputs, self.outputs)
        order = {id(layer): index for index, layer in enumerate(self._layers)}
        self._layers = sorted(
            graph.keras_layer_order(self._nodes, self.outputs),
            key=lambda layer: order.get(id(layer), len(order)),
        )
        return True

    @property
    def layers(self) -> list[Layer]:
        """The model's layers in Keras order; like Keras, without the Keras operations
        (the ops that compute masks), which the graph and its config still hold."""
        return [layer for layer in self._layers if not getattr(layer, "is_keras_op", False)]

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        if index is not None:
            if not 0 <= index < len(self.layers):
                raise ConfigError(
                    f"Was asked to retrieve layer at index {index} but model "
                    f"only has {len(self.layers)} layers."
                )
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ConfigError(
            f"No such layer: {name}. Existing layers are: {[layer.name for layer in self.layers]}."
        )

    def _all_variables(self) -> list[Variable]:
        return _unique(v for layer in self.layers for v in layer.weights)

    @property
    def weights(self) -> list[Variable]:
        """Every weight in layer order, each layer's own order inside (Keras order)."""
        return self._all_variables()

    @property
    def trainable_weights(self) -> list[Variable]:
        if not self.trainable:
            return []
        return _unique(v for layer in self.layers for v in layer.trainable_weights)

    @property
    def non_trainable_weights(self) -> list[Variable]:
        """Keras's order: for a frozen model, its layers' trainable weights, then their
        non-trainable ones (the layers' own order when they are frozen too)."""
        held = _unique(v for layer in self.layers for v in layer.non_trainable_weights)
        if self.trainable:
            return held
        return _unique([*(v for layer in self.layers for v in layer.trainable_weights), *held])

    @property
    def keras3_weight_entries(self) -> tuple[str, ...]:  # type: ignore[override]
        """Wrapped (``TimeDistributed(model)``), the model's layers' Keras 3 weight entries
        in layer order (``layers/dense``, ``layers/batch_normalization``): Keras keys them
        by class, which need not sort in that order."""
        return tuple(
            path
            for layer, key in zip(self.layers, keras3_keys(self.layers), strict=True)
            if layer.weights
            for path in keras3_entries_under(f"layers/{key}", layer)
        )

    def reader_range(self, tensor: KerasTensor, hook: str) -> tuple[int, int] | None:
        """The intersection of the ranges the layers reading ``tensor`` (one of this
        model's) state through the Layer hook ``hook`` (``input_value_range``,
        ``accepted_input_range``); None when no reader states one."""
        ranges = [
            getattr(n.layer, hook)() for n in self._nodes if any(t is tensor for t in n.inputs)
        ]
        ranges = [r for r in ranges if r is not None]
        if not ranges:
            return None
        return max(r[0] for r in ranges), min(r[1] for r in ranges)

    # A model nested as a layer reads its input as the layers in it do (an Embedding in
    # an embedding model); a model of several inputs states no range.
    def input_value_range(self) -> tuple[int, int] | None:
        if len(self.inputs) != 1:
            return None
        return self.reader_range(self.inputs[0], "input_value_range")

    def accepted_input_range(self) -> tuple[int, int] | None:
        if len(self.inputs) != 1:
            return None
        return self.reader_range(self.inputs[0], "accepted_input_range")

    @property
    def losses(self) -> list[float]:
        return [loss for layer in self.layers for loss in layer.losses]

    @property
    def input_names(self) -> list[str]:
        return [layer.name for layer in self.input_layers]

    @property
    def output_names(self) -> list[str]:
        return [t.history[0].name for t in self.outputs]

    @property
    def input_shape(self) -> Any:
        self._require_graph()
        shapes = [t.shape for t in self.inputs]
        return shapes if self._inputs_are_list else shapes[0]

    @property
    def output_shape(self) -> Any:
        self._require_graph()
        shapes = [t.shape for t in self.outputs]
        return shapes if self._outputs_are_list else shapes[0]

    def _require_graph(self) -> None:
        if not self.inputs:
            raise ConfigError(
                f"Model {self.name} has not been built yet: give its first layer "
                "an input shape, call it on data, or call `build(input_shape)`."
            )

    # ---- running -------------------------------------------------------------------
    def run(
        self,
        inputs: Any,
        training: bool = False,
        mask: Any = None,
        previous_mask: Any = NOT_GIVEN,
    ) -> tuple[Any, Any]:
        """Runs the graph; its output masks follow from the input masks ``mask``."""
        return self._run_arrays(self._standardize_inputs(inputs), training, mask)

    def _run_arrays(self, arrays: list[np.ndarray], training: bool, mask: Any) -> tuple[Any, Any]:
        masks = self._standardize_masks(mask)
        feeds: dict[int, tuple[Any, Any]] = {
            id(t): (a, m) for t, a, m in zip(self.inputs, arrays, masks, strict=True)
        }
        graph.run_nodes(self._nodes, feeds, training)
        values = [feeds[id(t)][0] for t in self.outputs]
        out_masks = [feeds[id(t)][1] for t in self.outputs]
        if self._outputs_are_list:
            return values, out_masks
        return values[0], out_masks[0]

    def call(self, inputs: Any, training: bool = False, mask: Any = None) -> Any:
        return self.run(inputs, training=training, mask=mask)[0]

    def output_dtype(self, input_dtype: str) -> str:
        return self.outputs[0].dtype if self.outputs else input_dtype

    def predict(self, x: Any, batch_size: int | None = 32, verbose: int = 0) -> Any:
        """Runs inference (training off) in batches of ``batch_size`` rows."""
        arrays = self._standardize_inputs(x)
        fed = [
            a for a, layer in zip(arrays, self.input_layers, strict=True) if layer.constant is None
        ]
        total = fed[0].shape[0] if fed and fed[0].ndim else 0
        step = batch_size or 32
        if step <= 0:
            raise ConfigError(
                "Expected `batch_size` to be a positive integer. "
                + received("batch_size", batch_size)
            )
        if total == 0:
            return self._run_arrays(arrays, False, None)[0]
        constants = [layer.constant is not None for layer in self.input_layers]
        chunks = []
        for start in range(0, total, step):
            part = [
                a if constant else a[start : start + step]
                for a, constant in zip(arrays, constants, strict=True)
            ]
            chunks.append(self._run_arrays(part, False, None)[0])
        if self._outputs_are_list:
            return [np.concatenate([c[i] for c in chunks]) for i in range(len(self.outputs))]
        return np.concatenate(chunks)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        """The output mask(s) for ``inputs`` (arrays) or symbolic tensors."""
        tensors = flatten(inputs)
        if tensors and isinstance(tensors[0], KerasTensor):
            return self._symbolic_outputs(tensors, mask)[1]
        return self.run(inputs, training=False, mask=mask)[1]

    def compute_output_shape_and_mask(self, inputs: Any, mask: Any = None) -> tuple[Any, Any]:
        """Both from one pass through the graph: asked one after the other, a model nested
        n deep would be passed through 2**n times."""
        shapes, masks = self._symbolic_outputs(flatten(inputs), mask)
        return (shapes if self._outputs_are_list else shapes[0]), masks

    def compute_output_shape(self, input_shape: Any) -> Any:
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        tensors = [KerasTensor(tuple(s), t.dtype) for s, t in zip(shapes, self.inputs, strict=True)]
        out = self._symbolic_outputs(tensors, None)[0]
        return out if self._outputs_are_list else out[0]

    def _symbolic_outputs(self, tensors: list[KerasTensor], mask: Any) -> tuple[list, Any]:
        masks = self._standardize_masks(mask)
        feeds = {
            id(t): KerasTensor(new.shape, new.dtype, new.name, new.mask if m is None else m)
            for t, new, m in zip(self.inputs, tensors, masks, strict=True)
        }
        graph.propagate_symbolic(self._nodes, feeds)
        outs = [feeds[id(t)] for t in self.outputs]
        out_masks = [t.mask for t in outs]
        return [t.shape for t in outs], out_masks if self._outputs_are_list else out_masks[0]

    def _standardize_inputs(self, inputs: Any) -> list[np.ndarray]:
        self._require_graph()
        fed = list(self.input_layers)
        if isinstance(inputs, Mapping):
            missing = [
                layer.name for layer in fed if layer.name not in inputs and layer.constant is None
            ]
            if missing:
                raise ShapeError(
                    f"Model {self.name} is missing inputs {missing}. "
                    f"Received: keys={sorted(inputs)}"
                )
            values = [inputs.get(layer.name, layer.constant) for layer in fed]
        else:
            given = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
            needed = [layer for layer in fed if layer.constant is None]
            if len(given) != len(needed):
                raise ShapeError(
                    f"Model {self.name} expects {len(needed)} input array(s) "
                    f"({[layer.name for layer in needed]}), but received {len(given)}."
                )
            supplied = iter(given)
            values = [
                layer.constant if layer.constant is not None else next(supplied) for layer in fed
            ]
        return [_check_input(layer, value) for layer, value in zip(fed, values, strict=True)]

    def _standardize_masks(self, mask: Any) -> list[Any]:
        if mask is None:
            return [None] * len(self.inputs)
        masks = list(mask) if isinstance(mask, (list, tuple)) else [mask]
        if len(masks) != len(self.inputs):
            raise ShapeError(
                f"Model {self.name} expects one mask per input "
                f"({len(self.inputs)}). Received: {len(masks)} masks"
            )
        return masks

    # ---- config --------------------------------------------------------------------
    def _sublayers(self) -> list[Layer]:
        return list(self._layers)

    def get_config(self) -> dict[str, Any]:
        self._require_graph()
        node_ids = {id(node) for node in self._nodes}
        index_of = {}
        for layer in self._layers:
            kept = [n for n in layer.inbound_nodes if id(n) in node_ids]
            first = self._first_saved_node_index(layer)
            for position, node in enumerate(kept):
                index_of[id(node)] = position + first

        def ref(tensor: KerasTensor) -> list[Any]:
            layer, node_index, tensor_index = tensor.history
            return [layer.name, index_of[id(layer.inbound_nodes[node_index])], tensor_index]

        def node_refs(node: Node) -> list[list[Any]]:
            # Tensor call arguments (attention_mask) are written as references; they
            # follow the input structure's tensors in ``node.inputs``.
            kwargs = {
                key: ref(value) if isinstance(value, KerasTensor) else value
                for key, value in node.call_kwargs.items()
            }
            inputs = node.inputs[: len(flatten(node.input_structure))]
            if isinstance(node.input_structure, (list, tuple)) and len(inputs) == 1:
                kwargs[LIST_OF_ONE] = True
            if node.call_masks is not NOT_GIVEN:
                kwargs["mask"] = pack_like(
                    node.call_masks,
                    [None if m is None else ref(m) for m in flatten(node.call_masks)],
                )
            return [[*ref(t), kwargs if i == 0 else {}] for i, t in enumerate(inputs)]

        layer_configs = []
        for layer in self._layers:
            nodes = [n for n in layer.inbound_nodes if id(n) in node_ids]
            inbound = [node_refs(n) for n in nodes if not isinstance(layer, InputLayer)]
            layer_configs.append(
                {
                    "name": layer.name,
                    "class_name": type(layer).__name__,
                    "config": layer.get_config(),
                    "inbound_nodes": inbound,
                }
            )
        return {
            "name": self.name,
            "layers": layer_configs,
            "input_layers": [ref(t) for t in self.inputs],
            "output_layers": [ref(t) for t in self.outputs],
        }

    def _first_saved_node_index(self, layer: Layer) -> int:
        """Keras 2 numbers a nested model's calls from 1 (its node 0 is its own graph);
        tf.keras does so only for functional models, Keras 3 never."""
        if not isinstance(layer, Model) or self.keras_version >= (3, 0, 0):
            return 0
        if self.keras_version < (2, 4, 0) or type(layer).__name__ == "Model":
            return 1
        return 0

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Model:
        from layerserve.models.rebuild import rebuild_functional

        inputs, outputs, name, order = rebuild_functional(config)
        model = cls(inputs, outputs, name=name)
        # Keep the file's layer order: weight files address layers by position.
        rank = {layer_name: i for i, layer_name in enumerate(order)}
        model._layers.sort(key=lambda layer: rank.get(layer.name, len(rank)))
        return model

    def to_json(self, **kwargs: Any) -> str:
        """Keras-style JSON: ``{"class_name", "config", "keras_version", "backend"}``."""
        document = {
            "class_name": type(self).__name__,
            "config": self.get_config(),
            "keras_version": version_string(self.keras_version, self.tf_keras_file),
            "backend": "layerserve",
            "layerserve_version": __version__,
        }
        return json.dumps(document, default=_json_default, **kwargs)

    def summary(
        self,
        line_length: int | None = None,
        positions: Sequence[float] | None = None,
        print_fn: Any = None,
    ) -> None:
        from layerserve.models.summary import print_summary

        print_summary(self, line_length, positions, print_fn)

    def save(self, filepath: Any) -> None:
        from layerserve.saving import save_model

        save_model(self, filepath)

    def load_weights(self, filepath: Any) -> None:
        from layerserve.saving import load_weights

        load_weights(self, filepath)


def _unique(variables: Any) -> list[Variable]:
    seen: list[Variable] = []
    for variable in variables:
        if all(variable is not v for v in seen):
            seen.append(variable)
    return seen


def _check_input(layer: InputLayer, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind in "OUSV" or drops_imaginary(array, layer.dtype):
        raise DTypeError(
            f"Input {layer.name!r} expects numeric data of dtype {layer.dtype}. "
            f"Received: dtype={array.dtype}"
        )
    expected = layer.batch_input_shape
    # tf.keras and Keras 3 run any batch size (they only warn about a fixed one);
    # Keras 2.2's placeholders refused one. Loaders free the batch size of saved models.
    checked = expected if layer.keras_version < (2, 4, 0) else (None, *expected[1:])
    if array.ndim != len(expected) or any(
        e is not None and e != a for e, a in zip(checked, array.shape, strict=False)
    ):
        raise ShapeError(
            f"Input {layer.name!r} expects shape {_shape_text(expected)} (None: any size). "
            f"Received: shape={tuple(array.shape)}"
        )
    if array.dtype != np.dtype(layer.dtype):
        array = array.astype(layer.dtype)
    return array


def _shape_text(shape: tuple) -> str:
    return (
        "("
        + ", ".join("None" if d is None else str(d) for d in shape)
        + (",)" if len(shape) == 1 else ")")
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _by_sorted_key(structure: Any) -> Any:
    """A dict's values in the order of its sorted keys; anything else as it is."""
    if isinstance(structure, dict):
        return [_by_sorted_key(structure[key]) for key in sorted(structure)]
    return structure
