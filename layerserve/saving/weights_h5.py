"""Reading Keras weight files with h5py.

Two layouts exist: Keras 2 (and Keras 3's legacy ``.h5``) keep one group per layer with
a ``weight_names`` attribute; Keras 3 ``.weights.h5`` keeps ``layers/<name>/vars/<i>``.
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from layerserve.errors import ModelFormatError, WeightsError
from layerserve.layers.base import Layer
from layerserve.layers.rnn.nested import keras3_keys
from layerserve.saving.cudnn_weights import convert_keras2_rnn_weights
from layerserve.saving.theano_files import THEANO, check_theano_layers, convert_theano_kernels
from layerserve.serialization import parse_version


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _attribute_list(group: h5py.Group, name: str) -> list[str] | None:
    """A list attribute as Keras writes it: whole, or split into ``name0``, ``name1``, ...
    when it exceeds the HDF5 object header limit (64512 bytes)."""
    if name in group.attrs:
        return [_text(v) for v in group.attrs[name]]
    if f"{name}0" not in group.attrs:
        return None
    values, chunk = [], 0
    while f"{name}{chunk}" in group.attrs:
        values += [_text(v) for v in group.attrs[f"{name}{chunk}"]]
        chunk += 1
    return values


def _member(group: h5py.Group, name: str, listed: str) -> Any:
    """``group[name]``, which the file's own lists name; a damaged file lacks it."""
    try:
        return group[name]
    except (KeyError, ValueError) as exc:
        raise WeightsError(
            f"The weights file is damaged: its {listed} {name!r}, which it does not hold "
            f"(in {group.name!r})."
        ) from exc


def has_layer_names(group: h5py.Group) -> bool:
    return "layer_names" in group.attrs or "layer_names0" in group.attrs


def load_layered_weights(group: h5py.Group, layers: list[Layer]) -> None:
    """Keras 2 layout: layers with weights, matched in order, as Keras 2 loads them."""
    names = _attribute_list(group, "layer_names")
    if names is None:
        raise ModelFormatError(
            "The HDF5 group has no 'layer_names' attribute: not a Keras weights file."
        )
    stored = []
    for name in names:
        layer_group = _member(group, name, "layer_names lists the layer")
        weight_names = _attribute_list(layer_group, "weight_names") or []
        if weight_names:  # read once matched with a layer, and its size checked
            datasets = [
                _member(layer_group, w, f"layer {name!r} lists the weight") for w in weight_names
            ]
            stored.append((name, datasets))
    targets = [layer for layer in layers if layer.weights]
    if len(stored) != len(targets):
        raise WeightsError(
            f"The weights file holds weights for {len(stored)} layers "
            f"({[n for n, _ in stored]}), but the model has {len(targets)} layers with weights "
            f"({[layer.name for layer in targets]})."
        )
    keras2 = _written_by_keras2(group)
    theano = keras2 and _written_on_theano(group)
    if theano:  # before any weight is set: a refused file changes nothing
        check_theano_layers(layers)
    for layer, (name, datasets) in zip(targets, stored, strict=True):
        _check_stored_size(layer, name, datasets)
        arrays = _in_layer_order(layer, [np.asarray(d) for d in datasets])
        try:
            if keras2:  # Keras 2 converts cuDNN-layout RNN weights; Keras 3 never does
                arrays = convert_keras2_rnn_weights(layer, arrays)
            if theano:
                arrays = convert_theano_kernels(layer, arrays)
            layer.set_weights(arrays)
        except WeightsError as exc:
            raise WeightsError(
                f"Loading weights of file layer {name!r} into layer {layer.name!r}: {exc}"
            ) from exc


# How many more values a file layer may store than its model layer holds, before any is
# read: the conversions of old files (cuDNN biases, Theano kernels) change shapes, never
# more than doubling a layer's values.
STORED_SIZE_FACTOR = 4


def _check_stored_size(layer: Layer, name: str, datasets: list[Any]) -> None:
    """Refuse, before reading them, weights far larger than the layer's (a compressed
    dataset of a 13 KB file can inflate to gigabytes): set_weights would refuse their
    shapes after they were read."""
    holds = sum(int(np.prod(v.shape)) for v in layer.weights)
    stored = sum(int(getattr(d, "size", 0) or 0) for d in datasets)
    if stored > STORED_SIZE_FACTOR * holds + 64:
        shapes = [tuple(getattr(d, "shape", ())) for d in datasets]
        raise WeightsError(
            f"Loading weights of file layer {name!r} into layer {layer.name!r}: expected "
            f"about {holds} values (weight shapes {[tuple(v.shape) for v in layer.weights]}). "
            f"Received: {stored} values stored (shapes {shapes})."
        )


def _in_layer_order(layer: Layer, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """``arrays`` as an ``.h5`` file lists them, put in ``layer.weights`` order. Keras's
    ``.h5`` writers list a layer's trainable weights, then its non-trainable ones (Keras 2's
    ``layer.weights``; Keras 3's legacy ``.h5`` keeps that order): for a model nested as a
    layer, the trainable weights of all its layers come before the frozen layers' and the
    batch statistics, where ``layer.weights`` goes layer by layer."""
    # once each, where first listed (a layer shared inside)
    listed = list(
        {id(v): v for v in layer.trainable_weights + layer.non_trainable_weights}.values()
    )
    variables = layer.weights
    position = {id(v): i for i, v in enumerate(listed)}
    same_set = len(listed) == len(variables) and all(id(v) in position for v in variables)
    if len(arrays) != len(listed) or not same_set:
        return arrays  # set_weights reports the count
    return [arrays[position[id(v)]] for v in variables]


def _stated(group: h5py.Group, name: str) -> Any:
    """An attribute as Keras 2 reads it: the group's (``model_weights`` of a whole model),
    else the file's (the root of a weights-only file); None when neither states it."""
    return group.attrs.get(name, group.file.attrs.get(name))


def _written_by_keras2(group: h5py.Group) -> bool:
    """Whether the ``keras_version`` stated is before 3; files that state none predate
    Keras 3."""
    version = _stated(group, "keras_version")
    return version is None or parse_version(_text(version)) < (3, 0, 0)


def _written_on_theano(group: h5py.Group) -> bool:
    """Whether the ``backend`` stated is Theano's (bytes that are not UTF-8 are not)."""
    backend = _stated(group, "backend")
    if isinstance(backend, bytes):
        backend = backend.decode("utf-8", "replace")
    return backend == THEANO


def load_keras3_weights(group: h5py.Group, layers: list[Layer], keras2: bool = False) -> None:
    """Keras 3 layout: ``layers/<key>/vars/0..n`` (sub-objects such as ``cell``).
    ``keras2``: tf.keras wrote it (its ``.keras`` format), so cuDNN-layout RNN weights
    (its CuDNNGRU/CuDNNLSTM layers' own) are converted."""
    if "layers" not in group:
        raise ModelFormatError(
            "The weights file has no 'layers' group: not a Keras 3 .weights.h5 file."
        )
    for layer, key in zip(layers, keras3_keys(layers), strict=True):
        if not layer.weights:
            continue
        if key not in group["layers"]:
            raise WeightsError(
                f"The weights file has no entry {key!r} for layer "
                f"{layer.name!r}. It holds: {sorted(group['layers'])}"
            )
        entry = group["layers"][key]
        sublayers = getattr(layer, "layers", None)
        if sublayers is not None and "layers" in entry:
            load_keras3_weights(entry, sublayers, keras2)
            continue
        inner = getattr(layer, "layer", None)  # a wrapper (TimeDistributed) of a model
        inner_layers = getattr(inner, "layers", None)
        if inner_layers is not None and "layer" in entry and "layers" in entry["layer"]:
            # layer by layer, as the model's own: the entries sort by name, not in the
            # model's order, and each layer's frozen weights and statistics stay its own
            load_keras3_weights(entry["layer"], inner_layers, keras2)
            continue
        arrays = _collect_vars(entry, getattr(layer, "keras3_weight_entries", ()))
        try:
            if keras2:
                arrays = convert_keras2_rnn_weights(layer, arrays)
            layer.set_weights(arrays)
        except WeightsError as exc:
            raise WeightsError(f"Loading weights of layer {layer.name!r}: {exc}") from exc


def _collect_vars(entry: h5py.Group, order: tuple[str, ...] = ()) -> list[np.ndarray]:
    """The arrays of one Keras 3 entry: its own ``vars``, then its sub-objects'. A layer
    whose sub-objects' names do not sort in weight order (Bidirectional's
    ``forward_layer`` before ``backward_layer``, MultiHeadAttention's ``query_dense``
    before ``key_dense``) names them in order in ``keras3_weight_entries``, as keys or
    paths (a stack of cells: ``cell/cells/lstm_cell``, ``cell/cells/gru_cell``)."""
    arrays = []
    if "vars" in entry:
        variables = entry["vars"]
        arrays += [np.asarray(variables[k]) for k in sorted(variables, key=int)]
    groups = [k for k in entry if k != "vars" and isinstance(entry[k], h5py.Group)]
    # An ordered key may be a path into a sub-object (RNN: "cell/cells/gru_cell"); the
    # sub-object it starts with is then read through the paths only.
    ordered = [k for k in order if k in entry and isinstance(entry[k], h5py.Group)]
    covered = {k.split("/")[0] for k in ordered}
    for key in ordered + sorted(k for k in groups if k not in covered):
        arrays += _collect_vars(entry[key])
    return arrays


def load_weights_file(model: Any, path: Any) -> None:
    """Either layout, from a weights-only file or a whole-model ``.h5`` file."""
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise ModelFormatError(f"Cannot open {path} as an HDF5 weights file: {exc}") from exc
    with handle:
        load_weights_group(model, handle)


def load_weights_group(model: Any, handle: h5py.Group) -> None:
    group = handle["model_weights"] if "model_weights" in handle else handle
    if has_layer_names(group):
        load_layered_weights(group, model.layers)
    elif "layers" in group:
        load_keras3_weights(group, model.layers)
    else:
        raise ModelFormatError(
            "The HDF5 file holds no Keras weights (neither 'layer_names' nor a 'layers' group)."
        )
