"""Keras 3's MultiHeadAttention removes the Keras masks of the tensors it reads.

Its ``call`` runs ``backend.set_keras_mask(query, None)`` (and for ``value`` and ``key``)
when the model runs, not while the model is built: its symbolic build goes through
``compute_output_spec``, so the graph records each tensor's mask as if nothing removed
it. A layer that runs after the attention layer and reads that tensor's mask from the
tensor itself then sees none:

- a layer whose call takes no ``mask`` argument (``Add``, ``LayerNormalization``,
  ``Dense``) derives its output mask from its inputs' masks at run time: ``Add([x,
  mha(x, x)])`` has no output mask (a merge of a masked and an unmasked input has none);
- MultiHeadAttention reads the masks of ``query``, ``value`` and ``key`` from the tensors
  at run time, so a second attention layer over that residual sum attends to every step.

A layer whose call takes ``mask`` records the mask it was built with in the file, and
Keras hands it that recorded tensor at run time, whatever happened to the input's own.

Keras runs a functional graph by decreasing depth (the longest path to an output), so
an attention layer deeper than another reader of its input runs first. This module
reproduces that: such a reader is rewired to read the tensor through an identity
``ConvertToTensor`` operation, which carries no mask, as the tensor does in Keras at that
point. Readers at the same depth as the attention layer run in an order layerserve does
not reproduce; a graph where that decides the masks is refused.

A model's own inputs carry no mask when it runs alone, but a nested model called on
masked tensors gets them: Keras 3's ``Functional.call`` sets the masks of the call on
its input tensors, which its own attention layers then remove for the inner layers
after them. When an outer graph calls a nested model with masks, the nested graph is
rewired for them as well; a reader rewired so reads the same values, without mask, when
the nested model is called without masks, so the nested model stays right for every
call.
"""

from __future__ import annotations

import warnings
from typing import Any

from layerserve.errors import NotSupportedError
from layerserve.layers.core.input_layer import InputLayer
from layerserve.layers.ops.shaping import ConvertToTensorOp
from layerserve.layers.tensor import NOT_GIVEN, KerasTensor, Node, flatten, pack_like
from layerserve.models import graph


def removes_input_masks(node: Node) -> bool:
    """Whether the node's call removes its inputs' masks (Keras 3 MultiHeadAttention)."""
    layer = node.layer
    return bool(getattr(layer, "removes_input_masks", False)) and layer.keras_version >= (3, 0, 0)


def reads_carried_masks(node: Node) -> bool:
    """Whether the call's result or output mask depends on the masks its input tensors
    carry at run time: layers that support masking without a recorded (non-None) mask.
    Keras operations carry and read no mask."""
    if getattr(node.layer, "is_keras_op", False) or not node.layer.supports_masking:
        return False
    if node.call_masks is NOT_GIVEN or node.call_masks is None:
        return True
    return all(m is None for m in flatten(node.call_masks))


def remove_masks_as_keras_runs(
    nodes: list[Node], input_masks: dict[int, Any] | None = None
) -> bool:
    """Rewires the readers that see a tensor after a Keras 3 MultiHeadAttention removed
    its mask; True if any was rewired (the caller then orders its nodes again).
    ``input_masks``: the masks (by id of the model's input tensor) a caller sets on the
    model's inputs when it runs the model nested; the inputs' own masks otherwise."""
    input_masks = input_masks or {}
    removers = [node for node in nodes if removes_input_masks(node)]
    nested = {id(node): _nested_removals(node) for node in nodes}
    nested_removers = {id(node) for node in nodes if _holds_removers(node.layer)}
    if not removers and not nested_removers:
        return False
    depths = graph.keras_node_depths(nodes)
    readers: dict[int, list[Node]] = {}
    for node in nodes:
        for tensor in _read_inputs(node):
            readers.setdefault(id(tensor), []).append(node)
    feeds: dict[int, KerasTensor] = {}
    removed_at: dict[int, int] = {}  # tensor id -> depth of the deepest remover
    unmasked: dict[int, KerasTensor] = {}  # tensor id -> the same values without mask
    rewired = False
    nested_rewired = False  # a nested model's graph: this one's symbolic masks change
    # Decreasing depth, ties in graph order: parents still come before their children.
    for node in sorted(nodes, key=lambda n: -depths[id(n)]):
        if isinstance(node.layer, InputLayer):
            for tensor in node.outputs:
                feeds[id(tensor)] = _copy(tensor, input_masks.get(id(tensor), tensor.mask))
            continue
        if reads_carried_masks(node):
            for index, tensor in enumerate(_read_inputs(node)):
                if feeds[id(tensor)].mask is None:
                    continue
                if removed_at.get(id(tensor), -1) > depths[id(node)]:
                    _refuse_unknown_recording(node, tensor)
                    _rewire(node, index, tensor, unmasked, feeds)
                    rewired = True
                    continue
                _refuse_nested(node, tensor, readers[id(tensor)], depths, nested)
                _refuse_same_depth(node, tensor, readers[id(tensor)], depths)
        if id(node) in nested_removers:
            nested_rewired |= _remove_nested_input_masks(node, feeds)
        _propagate(node, feeds)
        if removes_input_masks(node):
            for tensor in _read_inputs(node):
                depth = depths[id(node)]
                removed_at[id(tensor)] = max(removed_at.get(id(tensor), -1), depth)
    if rewired or nested_rewired:
        for node in nodes:
            for tensor in node.outputs:
                if tensor.mask is not None and feeds[id(tensor)].mask is None:
                    tensor.mask = None
    return rewired


def _read_inputs(node: Node) -> list[KerasTensor]:
    """The tensors of the call's input structure (not its tensor arguments, such as
    attention's ``attention_mask``, whose masks no layer reads)."""
    return node.inputs[: len(flatten(node.input_structure))]


def _holds_removers(layer: Any) -> bool:
    """Whether a nested model's graph (at any depth) holds a Keras 3 MultiHeadAttention."""
    return any(
        removes_input_masks(inner) or _holds_removers(inner.layer)
        for inner in getattr(layer, "_nodes", None) or []
    )


def _remove_nested_input_masks(node: Node, feeds: dict[int, KerasTensor]) -> bool:
    """A nested model called with masks (those recorded for the call, else those its
    input tensors carry, as Keras 3 hands them to ``Functional.call``): its graph is
    rewired for the inner readers that see its inputs after its attention layers
    removed those masks. True if it was rewired."""
    tensors = [feeds[id(t)] for t in node.inputs]
    propagated = graph.propagated_masks(node, [t.mask for t in tensors])
    mask, _ = node.masks_for_call(propagated, lambda t: feeds[id(t)])
    if mask is None:
        return False
    model = node.layer
    given = {
        id(inner): outer
        for inner, outer in zip(model.inputs, flatten(mask), strict=False)
        if outer is not None
    }
    return bool(given) and model.remove_input_masks_as_keras_runs(given)


def _nested_removals(node: Node) -> list[KerasTensor]:
    """The tensors a nested functional model may remove the masks of: those its inner
    graph hands directly to a Keras 3 MultiHeadAttention (Keras sets the mask of the
    caller's own tensor on the inner input, which the attention layer then removes,
    unless Keras converted the tensor first)."""
    inner_inputs = getattr(node.layer, "inputs", None)
    inner_nodes = getattr(node.layer, "_nodes", None)
    if not inner_inputs or not inner_nodes:
        return []
    removed = set()
    for inner in inner_nodes:
        if removes_input_masks(inner):
            removed |= {id(t) for t in _read_inputs(inner)}
        removed |= {id(t) for t in _nested_removals(inner)}
    outer = _read_inputs(node)
    return [
        outer[index]
        for index, tensor in enumerate(inner_inputs)
        if id(tensor) in removed and index < len(outer)
    ]


def _refuse_nested(
    node: Node,
    tensor: KerasTensor,
    readers: list[Node],
    depths: dict[int, int],
    nested: dict[int, list[KerasTensor]],
) -> None:
    for other in readers:
        if (
            other is not node
            and any(t is tensor for t in nested[id(other)])
            and depths[id(other)] >= depths[id(node)]
        ):
            raise NotSupportedError(
                f"Layer {other.layer.name} (a nested model): its MultiHeadAttention may "
                f"remove the Keras 3 mask of {tensor.name!r} before layer "
                f"{node.layer.name!r} reads it, depending on whether Keras hands the "
                "nested model that tensor itself; layerserve does not reproduce that. "
                "Received: a masked input shared with other layers"
            )


def _refuse_same_depth(
    node: Node, tensor: KerasTensor, readers: list[Node], depths: dict[int, int]
) -> None:
    rivals = [
        other.layer.name
        for other in readers
        if other is not node
        and removes_input_masks(other)
        and depths[id(other)] == depths[id(node)]
    ]
    if rivals:
        raise NotSupportedError(
            f"Layer {rivals[0]} (MultiHeadAttention): Keras 3 removes the mask of its "
            f"input {tensor.name!r} when it runs, which layer {node.layer.name!r} also "
            "reads at the same depth of the graph; whether it sees the mask depends on "
            "Keras's execution order within a depth, which layerserve does not reproduce. "
            "Received: a masked input shared with other layers"
        )


def _refuse_unknown_recording(node: Node, tensor: KerasTensor) -> None:
    """A call recorded without ``mask=`` in a model built in layerserve: whether Keras 3
    would have recorded the tensor's mask for it (a layer whose call takes ``mask``) or
    let it read the removed one is not known, unless the tensor had no mask when the
    model was built (a nested model's input: Keras records no mask then). A Keras 3 file
    says it: such a call recorded none (the Attention layers' calls, say), and reads the
    mask the tensor carries when it runs, which is gone."""
    if node.call_masks is NOT_GIVEN and tensor.mask is not None and not node.layer.read_from_file:
        raise NotSupportedError(
            f"Layer {node.layer.name!r} reads {tensor.name!r} after a Keras 3 "
            "MultiHeadAttention removed its mask, in a model built in layerserve: whether "
            "Keras would hand it the mask recorded when the model was built depends on its "
            "Keras call, which layerserve does not reproduce here; build the model in "
            "Keras and load its file. Received: a masked input shared with other layers"
        )


def _rewire(
    node: Node,
    index: int,
    tensor: KerasTensor,
    unmasked: dict[int, KerasTensor],
    feeds: dict[int, KerasTensor],
) -> None:
    if id(tensor) not in unmasked:
        layer, node_index, tensor_index = tensor.history
        op = ConvertToTensorOp(
            name=f"{layer.name}_{node_index}_{tensor_index}_mask_removed", keeps_mask=False
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            output = op(tensor)
        unmasked[id(tensor)] = output
        feeds[id(output)] = _copy(output, None)
    output = unmasked[id(tensor)]
    node.inputs[index] = output
    leaves = flatten(node.input_structure)
    leaves[index] = output
    node.input_structure = pack_like(node.input_structure, leaves)


def _propagate(node: Node, feeds: dict[int, KerasTensor]) -> None:
    """The node's output masks from its inputs' current ones (``propagate_symbolic``)."""
    tensors = [feeds[id(t)] for t in node.inputs]
    args = pack_like(node.input_structure, tensors[: len(flatten(node.input_structure))])
    propagated = graph.propagated_masks(node, [t.mask for t in tensors])
    _, previous = node.masks_for_call(propagated, lambda t: feeds[id(t)])
    options = graph.call_options(node, lambda t: feeds[id(t)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras 3 warns of masks dropped; nothing to tell
        out_mask = node.layer.compute_mask(args, previous, **options)
    masks = graph.mask_list(out_mask, len(node.outputs))
    for tensor, mask in zip(node.outputs, masks, strict=True):
        feeds[id(tensor)] = _copy(tensor, mask)


def _copy(tensor: KerasTensor, mask: Any) -> KerasTensor:
    return KerasTensor(tensor.shape, tensor.dtype, tensor.name, mask)
