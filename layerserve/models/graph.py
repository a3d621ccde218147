"""Ordering and running the nodes of a model graph."""

from __future__ import annotations

from typing import Any

from layerserve.errors import ConfigError, LayerCallError, LayerserveError
from layerserve.layers.core.input_layer import InputLayer
from layerserve.layers.tensor import KerasTensor, Node, flatten, pack_like


def topological_nodes(inputs: list[KerasTensor], outputs: list[KerasTensor]) -> list[Node]:
    """Every node needed to compute ``outputs``, parents first, input-layer nodes included."""
    ordered: list[Node] = []
    state: dict[int, str] = {}

    def visit(node: Node) -> None:
        key = id(node)
        if state.get(key) == "done":
            return
        if state.get(key) == "active":
            raise ConfigError(f"The model graph has a cycle through layer {node.layer.name}.")
        state[key] = "active"
        for parent in node.parents:
            visit(parent)
        state[key] = "done"
        ordered.append(node)

    for tensor in inputs:  # an input no output reads is the model's all the same
        if tensor.history is not None:
            layer, node_index, _ = tensor.history
            visit(layer.inbound_nodes[node_index])
    for tensor in outputs:
        if tensor.history is None:
            raise ConfigError(f"Model output {tensor} was not produced by a layer.")
        layer, node_index, _ = tensor.history
        visit(layer.inbound_nodes[node_index])
    available = {id(t) for t in inputs}
    for node in ordered:
        if isinstance(node.layer, InputLayer) and not any(id(t) in available for t in node.outputs):
            needed = [n.layer.name for n in ordered if node in n.parents]
            raise ConfigError(
                f"Graph disconnected: cannot obtain value for tensor {node.outputs[0].name} "
                f"at layer(s) {needed}. The following previous layers were accessed without "
                f"issue: {[t.name for t in inputs]}"
            )
    return ordered


def run_nodes(nodes: list[Node], feeds: dict[int, tuple[Any, Any]], training: bool) -> None:
    """Run each node eagerly, storing ``(value, mask)`` per output tensor id in ``feeds``."""
    for node in nodes:
        if isinstance(node.layer, InputLayer):
            continue
        values = [feeds[id(t)] for t in node.inputs]
        args = pack_like(node.input_structure, [v for v, _ in values])
        propagated = propagated_masks(node, [m for _, m in values])
        mask, previous = node.masks_for_call(propagated, lambda t: feeds[id(t)][0])
        node_training = node.call_kwargs.get("training", training)
        options = call_options(node, lambda t: feeds[id(t)][0])
        try:
            outputs, output_mask = node.layer.run(
                args, training=node_training, mask=mask, previous_mask=previous, **options
            )
        except (LayerserveError, MemoryError, RecursionError):
            raise
        except Exception as exc:  # noqa: BLE001 - whatever a layer raises names the layer
            raise LayerCallError(
                f"Layer {node.layer.name!r} ({type(node.layer).__name__}) failed on inputs "
                f"of shape {[getattr(v, 'shape', None) for v, _ in values]}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        _store(node, outputs, output_mask, feeds)


def propagate_symbolic(nodes: list[Node], feeds: dict[int, KerasTensor]) -> None:
    """Static shapes and masks through the graph, without recording new nodes."""
    for node in nodes:
        if isinstance(node.layer, InputLayer):
            continue
        tensors = [feeds[id(t)] for t in node.inputs]
        args = pack_like(node.input_structure, tensors)
        shapes = pack_like(node.input_structure, [t.shape for t in tensors])
        propagated = propagated_masks(node, [t.mask for t in tensors])
        _, previous = node.masks_for_call(propagated, lambda t: feeds[id(t)])
        options = call_options(node, lambda t: feeds[id(t)])
        if options:
            out_shapes = node.layer.compute_output_shape(shapes, **options)
            out_mask = node.layer.compute_mask(args, previous, **options)
        else:
            out_shapes, out_mask = node.layer.compute_output_shape_and_mask(args, previous)
        shape_list = out_shapes if isinstance(out_shapes, list) else [out_shapes]
        masks = mask_list(out_mask, len(shape_list))
        for tensor, shape, mask in zip(node.outputs, shape_list, masks, strict=True):
            feeds[id(tensor)] = KerasTensor(shape, tensor.dtype, tensor.name, mask)


def call_options(node: Node, value_of: Any) -> dict[str, Any]:
    """The call arguments a node recorded besides ``training`` (the attention layers'
    ``return_attention_scores``, ``attention_mask`` ...), tensors mapped by
    ``value_of``; empty for every other layer."""
    return {
        key: value_of(value) if isinstance(value, KerasTensor) else value
        for key, value in node.call_kwargs.items()
        if key != "training"
    }


def propagated_masks(node: Node, masks: list[Any]) -> Any:
    """The masks the inputs carry, in the call's input structure (None if none has one)."""
    return None if all(m is None for m in masks) else pack_like(node.input_structure, masks)


def _store(node: Node, outputs: Any, output_mask: Any, feeds: dict[int, tuple[Any, Any]]) -> None:
    values = flatten(outputs) if len(node.outputs) > 1 else [outputs]
    masks = mask_list(output_mask, len(values))
    for tensor, value, mask in zip(node.outputs, values, masks, strict=True):
        feeds[id(tensor)] = (value, mask)


def mask_list(mask: Any, count: int) -> list[Any]:
    if isinstance(mask, (list, tuple)):
        return list(mask)
    return [mask] * count


def keras_layer_order(nodes: list[Node], outputs: list[KerasTensor]) -> list[Any]:
    """Layers by decreasing depth, ties broken by first visit from the outputs (the order
    Keras gives ``model.layers``, and so the order of ``get_weights()``)."""
    first_seen: dict[int, int] = {}

    def visit(node: Node, path: set[int]) -> None:
        if id(node.layer) not in first_seen:
            first_seen[id(node.layer)] = len(first_seen)
        if id(node) in path:
            return
        for parent in node.parents:
            visit(parent, path | {id(node)})

    for tensor in outputs:
        layer, node_index, _ = tensor.history
        visit(layer.inbound_nodes[node_index], set())
    layer_depth = _depths(nodes)[1]
    layers = {id(node.layer): node.layer for node in nodes}
    return sorted(
        layers.values(), key=lambda layer: (-layer_depth[id(layer)], first_seen.get(id(layer), 0))
    )


def keras_node_depths(nodes: list[Node]) -> dict[int, int]:
    """Each node's depth (by id) as Keras computes it: 0 for the outputs' nodes, else one
    more than the deepest node reading its outputs, and a shared layer's nodes no
    shallower than its deepest. Keras runs a graph by decreasing depth."""
    return _depths(nodes)[0]


def _depths(nodes: list[Node]) -> tuple[dict[int, int], dict[int, int]]:
    node_depth: dict[int, int] = {}
    layer_depth: dict[int, int] = {}
    for node in reversed(nodes):  # nodes are parents-first, so this walks outputs first
        depth = max(node_depth.get(id(node), 0), layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = depth
        node_depth[id(node)] = depth
        for parent in node.parents:
            node_depth[id(parent)] = max(depth + 1, node_depth.get(id(parent), 0))
    return node_depth, layer_depth
