"""Symbolic tensors and the nodes that connect layers in a model graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from layerserve.layers.base import Layer

Shape = tuple[int | None, ...]


class KerasTensor:
    """A placeholder with a static shape (batch axis ``None``) used to wire models.

    ``mask`` is another KerasTensor (dtype bool) when the value carries a Keras mask.
    ``history`` is ``(layer, node_index, tensor_index)`` of the node that produced it.
    """

    __slots__ = ("shape", "dtype", "name", "mask", "history")

    def __init__(
        self,
        shape: Shape,
        dtype: str = "float32",
        name: str | None = None,
        mask: KerasTensor | None = None,
        history: tuple[Layer, int, int] | None = None,
    ) -> None:
        self.shape = tuple(None if d is None else int(d) for d in shape)
        self.dtype = str(dtype)
        self.name = name
        self.mask = mask
        self.history = history

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"

    def __bool__(self) -> bool:
        raise TypeError(
            "A symbolic KerasTensor has no truth value; it only stands for a future array."
        )


class _NotGiven:
    """Marks a call argument that was not passed (distinct from an explicit None)."""

    _instance: _NotGiven | None = None

    def __new__(cls) -> _NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> bool:
        return False


NOT_GIVEN = _NotGiven()


@dataclass(eq=False)
class Node:
    """One call of ``layer`` on ``inputs`` that produced ``outputs``.

    ``call_masks`` is ``NOT_GIVEN`` when the masks the layer sees are those its inputs
    carry (Keras 2 files, and calls without ``mask=``). Otherwise it is the ``mask``
    argument of the call as recorded: the structure of ``input_structure`` with a
    KerasTensor (a bool tensor of the graph) or None per input, or None. Keras 3 files
    record the mask of every call that takes one, explicit or not.
    """

    layer: Layer
    inputs: list[KerasTensor]
    outputs: list[KerasTensor]
    input_structure: Any
    call_kwargs: dict[str, Any] = field(default_factory=dict)
    call_masks: Any = NOT_GIVEN

    @property
    def mask_tensors(self) -> list[KerasTensor]:
        if self.call_masks is NOT_GIVEN:
            return []
        return [m for m in flatten(self.call_masks) if isinstance(m, KerasTensor)]

    @property
    def parents(self) -> list[Node]:
        found = []
        for tensor in [*self.inputs, *self.mask_tensors]:
            if tensor.history is not None:
                layer, node_index, _ = tensor.history
                found.append(layer.inbound_nodes[node_index])
        return found

    def masks_for_call(self, propagated: Any, lookup: Any) -> tuple[Any, Any]:
        """``(mask, previous_mask)`` of this call: the mask given to ``call``, and the one
        ``compute_mask`` derives the output mask from. ``propagated`` is the structure of
        the input tensors' own masks (None if all are None); ``lookup`` maps a recorded
        mask tensor to its value. A mask given as None, or as a list of Nones, goes to
        ``call`` as given. The output mask derives from it in tf.keras (whose output masks
        come from the masks a call was given), and from a list of Nones in Keras 3 too; a
        plain None in Keras 3 (a call Keras handed no mask, as the file records it) and
        every None in multi-backend Keras 2.2-2.3 (and models built in code) leave the
        output mask to the inputs' own masks."""
        if self.call_masks is NOT_GIVEN:
            return propagated, propagated
        layer = self.layer
        tf_keras = layer.tf_keras_file or (2, 4, 0) <= layer.keras_version < (3, 0, 0)
        if self.call_masks is None:
            return None, None if tf_keras else propagated
        recorded = pack_like(
            self.call_masks,
            [None if m is None else lookup(m) for m in flatten(self.call_masks)],
        )
        multi_backend = layer.keras_version < (2, 4, 0) and not layer.tf_keras_file
        if multi_backend and all(m is None for m in flatten(recorded)):
            return recorded, propagated
        return recorded, recorded


def is_symbolic(value: Any) -> bool:
    if isinstance(value, KerasTensor):
        return True
    if isinstance(value, (list, tuple)):
        return any(is_symbolic(v) for v in value)
    return False


def flatten(structure: Any) -> list[Any]:
    """Leaves of a (possibly nested) list/tuple, in order."""
    if isinstance(structure, (list, tuple)):
        out: list[Any] = []
        for item in structure:
            out.extend(flatten(item))
        return out
    return [structure]


def pack_like(structure: Any, leaves: list[Any]) -> Any:
    """Rebuild ``structure`` with ``leaves`` in place of its leaves."""
    iterator = iter(leaves)

    def build(node: Any) -> Any:
        if isinstance(node, (list, tuple)):
            return (
                type(node)(build(item) for item in node)
                if isinstance(node, tuple)
                else [build(item) for item in node]
            )
        return next(iterator)

    return build(structure)
