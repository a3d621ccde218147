"""TensorFlow Serving REST: version labels, model status (GetModelStatus, with KServe
V1's ``name`` and ``ready``) and signature metadata (GetModelMetadata), built from the
repository and the ONNX inputs and outputs."""

from __future__ import annotations

from typing import Any

from layerserve.service.errors import ModelNotFound
from layerserve.service.repository import MODEL_FILE, UNLOADED, ModelRepository, ModelState
from layerserve.service.runtime import LoadedModel, TensorSpec
from layerserve.service.storage import is_version_name

SIGNATURE = "serving_default"
METHOD_NAME = "tensorflow/serving/predict"
LATEST_LABEL = "latest"
DT_NAMES = {
    "BOOL": "DT_BOOL",
    "UINT8": "DT_UINT8",
    "UINT16": "DT_UINT16",
    "UINT32": "DT_UINT32",
    "UINT64": "DT_UINT64",
    "INT8": "DT_INT8",
    "INT16": "DT_INT16",
    "INT32": "DT_INT32",
    "INT64": "DT_INT64",
    "FP16": "DT_HALF",
    "FP32": "DT_FLOAT",
    "FP64": "DT_DOUBLE",
    "BYTES": "DT_STRING",
    "STRING": "DT_STRING",
    "BF16": "DT_BFLOAT16",
}


# ---- versions and labels -------------------------------------------------------------
def version_for_label(model_name: str, label: str) -> str | None:
    """Labels name versions; this server has one implicit label, ``latest``."""
    if label == LATEST_LABEL:
        return None
    raise ModelNotFound(
        f"label '{label}' is not assigned to any version of model '{model_name}': "
        f"this server has no version labels configured (only '{LATEST_LABEL}'); "
        "address a version with /versions/<n>"
    )


# ---- status ------------------------------------------------------------------------
def model_status(
    repository: ModelRepository, name: str, version: str | None, labelled: bool = False
) -> dict[str, Any]:
    """GetModelStatus: every version without ``version``, or with ``labelled`` (the
    ``latest`` label) the version Predict runs, as TF Serving answers for a label; also
    KServe V1's name/ready."""
    state = next((s for s in repository.states() if s.name == name), None)
    on_disk = name in repository.model_names_on_disk()
    if state is None and not on_disk:
        raise ModelNotFound(f"Request for unknown model: '{name}' is not found")
    entries = _version_entries(repository, name, state)
    available = [e for e in entries if e["state"] == "AVAILABLE"]
    if labelled and version is None and available:
        version = max((e["version"] for e in available), key=int)
    if version is not None:
        selected = [e for e in entries if e["version"] == version]
        if not selected:
            raise ModelNotFound(
                f"Request for unknown model: '{name}' version {version} is not found; "
                f"available versions: {[e['version'] for e in entries]}"
            )
        entries = selected
    return {
        "model_version_status": entries,
        "name": name,
        "ready": any(e["state"] == "AVAILABLE" for e in entries),
    }


def _version_entries(
    repository: ModelRepository, name: str, state: ModelState | None
) -> list[dict[str, Any]]:
    if state is not None and state.versions:
        # Beside the versions serving, those whose load failed (TF Serving's status lists
        # every version it tried): END with the error.
        versions = {
            v: ("END", "UNKNOWN", reason)
            for v, (_, reason) in state.failed.items()
            if v not in state.versions
        }
        versions.update(dict.fromkeys(state.versions, ("AVAILABLE", "OK", "")))
    else:
        if state is None:
            status = ("START", "OK", "")
        elif state.state == "LOADING":
            status = ("LOADING", "OK", "")
        elif state.reason == UNLOADED:
            status = ("END", "OK", "")
        else:
            status = ("END", "UNKNOWN", state.reason)
        versions = dict.fromkeys(_disk_versions(repository, name), status)
    return [
        {
            "version": v,
            "state": s,
            "status": {"error_code": code, "error_message": message},
        }
        for v, (s, code, message) in sorted(versions.items(), key=lambda kv: int(kv[0]))
    ]


def _disk_versions(repository: ModelRepository, name: str) -> list[str]:
    if name not in repository.model_names_on_disk():  # never a path from the URL as is
        return []
    model_dir = repository.root / name
    return [
        p.name
        for p in model_dir.iterdir()
        if p.is_dir() and is_version_name(p.name) and (p / MODEL_FILE).is_file()
    ]


# ---- metadata ----------------------------------------------------------------------
def model_metadata(model: LoadedModel) -> dict[str, Any]:
    """GetModelMetadata with one ``serving_default`` signature built from the ONNX I/O."""
    return {
        "model_spec": {"name": model.name, "signature_name": "", "version": model.version},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    SIGNATURE: {
                        "inputs": {s.name: _tensor_info(s) for s in model.inputs},
                        "outputs": {s.name: _tensor_info(s) for s in model.outputs},
                        "method_name": METHOD_NAME,
                    }
                }
            }
        },
    }


def _tensor_info(spec: TensorSpec) -> dict[str, Any]:
    return {
        "dtype": DT_NAMES.get(spec.datatype, "DT_INVALID"),
        "tensor_shape": {
            "dim": [{"size": str(d), "name": ""} for d in spec.shape],
            "unknown_rank": False,
        },
        "name": spec.name,
    }
