"""The masks of a served model: the timesteps its Masking layers mask in each input row
(read from the Keras model config the exporter stores in the graph's metadata), and the
``<output>_mask`` outputs the graph computes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from layerserve.layers.core.masking import timestep_mask
from layerserve.saving.keras_json import detect_keras_version, normalize_model, parse_document
from layerserve.service.errors import InvalidInput
from layerserve.service.inspection import PerModel
from layerserve.service.runtime import LoadedModel

log = logging.getLogger("layerserve.service")


@dataclass(frozen=True)
class InputMasking:
    """A Masking layer applied directly to a model input."""

    input: str
    layer: str
    mask_value: float


def input_maskings(model: LoadedModel) -> dict[str, InputMasking]:
    """The Masking layers applied directly to inputs, by input name, read from the
    Keras model config the exporter stores in the graph's metadata."""
    return _maskings.get(model, _read_maskings)


def _read_maskings(model: LoadedModel) -> dict[str, InputMasking]:
    text = model.metadata.get("model_config")
    if not text:
        return {}
    try:
        return _find_maskings(model, text)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        # Any graph may carry metadata; a config layerserve cannot read means no masks.
        log.warning("model '%s': unreadable model_config metadata: %s", model.name, exc)
        return {}


def _find_maskings(model: LoadedModel, text: str) -> dict[str, InputMasking]:
    document = parse_document(text)
    normalized = normalize_model(document, detect_keras_version(document))
    config = normalized.get("config") or {}
    layers = [entry for entry in config.get("layers", []) if isinstance(entry, dict)]
    input_names = {spec.name for spec in model.inputs}
    found: dict[str, InputMasking] = {}
    if normalized.get("class_name") == "Sequential":
        first = next((e for e in layers if e.get("class_name") != "InputLayer"), None)
        if first is not None and len(model.inputs) == 1 and first["class_name"] == "Masking":
            found[model.inputs[0].name] = _masking(model.inputs[0].name, first)
        return found
    inputs = {e.get("name") for e in layers if e.get("class_name") == "InputLayer"}
    for entry in layers:
        if entry.get("class_name") != "Masking":
            continue
        for node in entry.get("inbound_nodes", []):
            source = node[0][0] if len(node) == 1 and node[0] else None
            if source in inputs and source in input_names:
                found[source] = _masking(source, entry)
    return found


def _masking(input_name: str, entry: dict[str, Any]) -> InputMasking:
    config = entry.get("config") or {}
    name = str(entry.get("name") or config.get("name") or "masking")
    return InputMasking(input_name, name, float(config.get("mask_value", 0.0)))


_maskings = PerModel()


def require_masks(model: LoadedModel) -> None:
    if not input_maskings(model) and not model.mask_outputs:
        raise InvalidInput(
            f"model '{model.name}' version {model.version} has neither Masking layers "
            "applied to its inputs nor mask outputs ('<output>_mask'), so it has no "
            "masks to report"
        )


def mask_report(
    model: LoadedModel, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Per input row, the timesteps the model's Masking layers mask (Keras convention:
    ``true`` = kept), and the output masks the graph computed."""
    maskings = input_maskings(model)
    input_entries = []
    for spec in model.inputs:
        masking = maskings.get(spec.name)
        entry: dict[str, Any] = {
            "name": spec.name,
            "masking_layer": None,
            "mask_value": None,
            "mask": None,
            "masked_timesteps": None,
        }
        if masking is not None:
            mask = timestep_mask(inputs[spec.name], masking.mask_value)
            entry.update(
                masking_layer=masking.layer,
                mask_value=masking.mask_value,
                mask=mask.tolist(),
                masked_timesteps=_masked_indices(mask),
            )
        input_entries.append(entry)
    mask_names = set(model.mask_outputs.values())
    output_entries = []
    for spec in model.outputs:
        if spec.name in mask_names:
            continue
        mask_name = model.mask_outputs.get(spec.name)
        mask = outputs.get(mask_name) if mask_name else None
        output_entries.append(
            {
                "name": spec.name,
                "shape": list(outputs[spec.name].shape),
                "mask_output": mask_name if mask is not None else None,
                "mask": None if mask is None else mask.tolist(),
                "masked_timesteps": None if mask is None else _masked_indices(mask),
            }
        )
    return {
        "model_name": model.name,
        "model_version": model.version,
        "inputs": input_entries,
        "outputs": output_entries,
    }


def _masked_indices(mask: np.ndarray) -> list[Any] | None:
    """Per row, the masked positions: timestep indices for (batch, timesteps) masks,
    index lists for deeper ones; None when a row's mask is a single value."""
    if mask.ndim < 2:
        return None
    rows = []
    for row in np.asarray(mask, dtype=bool):
        masked = np.argwhere(~row)
        rows.append(masked[:, 0].tolist() if row.ndim == 1 else masked.tolist())
    return rows
