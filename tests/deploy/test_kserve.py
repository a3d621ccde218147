"""The KServe runtime and the example InferenceService, checked without a cluster: both
validate against KServe's own CRD schemas (vendored in kserve_crds/, converted to JSON
Schema, checked with check-jsonschema), before and after kustomize, and the runtime
serves /mnt/models read-only over the V2 protocol that the InferenceService asks for."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from layerserve.service.grpc.server import LIVENESS_SERVICE
from layerserve.service.settings import Settings

KSERVE = Path(__file__).resolve().parents[2] / "docker" / "kubernetes" / "kserve"
MANIFESTS = sorted(p.name for p in KSERVE.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.fixture(scope="module")
def manifests(read_manifest) -> list[dict[str, Any]]:
    """Every object, from the files as written."""
    return [obj for name in MANIFESTS for obj in read_manifest(KSERVE / name)]


def protocol_of(obj: dict[str, Any]) -> str:
    """The protocol of a runtime (its one) or of an InferenceService."""
    if obj["kind"] == "InferenceService":
        return obj["spec"]["predictor"]["model"]["protocolVersion"]
    (protocol,) = obj["spec"]["protocolVersions"]
    return protocol


@pytest.fixture(scope="module")
def kserve(manifests) -> dict[str, dict[str, Any]]:
    """kind -> the object: the runtime and the InferenceService served over REST (v2)."""
    return {obj["kind"]: obj for obj in manifests if protocol_of(obj) == "v2"}


@pytest.fixture(scope="module")
def grpc_kserve(manifests) -> dict[str, dict[str, Any]]:
    """kind -> the object: the runtime and the InferenceService served over gRPC (grpc-v2)."""
    return {obj["kind"]: obj for obj in manifests if protocol_of(obj) == "grpc-v2"}


def runtime_container(runtime: dict[str, Any]) -> dict[str, Any]:
    (container,) = runtime["spec"]["containers"]
    return container


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def write(folder: Path, obj: dict[str, Any], name: str) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(obj), encoding="utf-8")
    return path


def test_the_vendored_crds_are_the_kinds_used(manifests, kserve, kserve_schemas):
    assert sorted(o["kind"] for o in manifests) == 2 * ["ClusterServingRuntime"] + 2 * [
        "InferenceService"
    ]
    assert set(kserve) == {"ClusterServingRuntime", "InferenceService"}
    assert set(kserve_schemas) >= set(kserve)


@pytest.mark.parametrize("name", MANIFESTS)
def test_each_manifest_validates_against_its_crd(
    read_manifest, kserve_schemas, jsonschema_check, name
):
    (obj,) = read_manifest(KSERVE / name)
    done = jsonschema_check(kserve_schemas[obj["kind"]], KSERVE / name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_kustomize_output_validates(kustomize, kserve_schemas, jsonschema_check, tmp_path):
    objects = kustomize("kserve")
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == 2 * ["ClusterServingRuntime"] + 2 * ["InferenceService"]
    for obj in objects:
        instance = write(tmp_path, obj, f"{obj['kind']}-{obj['metadata']['name']}.yaml")
        done = jsonschema_check(kserve_schemas[obj["kind"]], instance)
        assert done.returncode == 0, done.stdout + done.stderr
    for runtime in (o for o in objects if o["kind"] == "ClusterServingRuntime"):
        assert runtime_container(runtime)["image"] == "layerserve:latest"  # images: applies


def _misspell_model_field(isvc: dict[str, Any]) -> None:
    isvc["spec"]["predictor"]["model"]["runtimeName"] = "layerserve"


def _string_for_a_boolean(runtime: dict[str, Any]) -> None:
    runtime["spec"]["supportedModelFormats"][0]["autoSelect"] = "yes"


def _unknown_container_field(runtime: dict[str, Any]) -> None:
    runtime_container(runtime)["readinessProbe"]["httpGet"]["paths"] = "/v2/health/ready"


def _wrong_api_version(isvc: dict[str, Any]) -> None:
    isvc["apiVersion"] = "serving.kserve.io/v1alpha1"


@pytest.mark.parametrize(
    ("kind", "mistake", "named"),
    [
        ("InferenceService", _misspell_model_field, "runtimeName"),
        ("ClusterServingRuntime", _string_for_a_boolean, "autoSelect"),
        ("ClusterServingRuntime", _unknown_container_field, "paths"),
        ("InferenceService", _wrong_api_version, "apiVersion"),
    ],
    ids=["misspelt-field", "wrong-type", "unknown-nested-field", "wrong-api-version"],
)
def test_the_converted_schemas_refuse_mistakes(
    kserve, kserve_schemas, jsonschema_check, tmp_path, kind, mistake, named
):
    broken = copy.deepcopy(kserve[kind])
    mistake(broken)
    done = jsonschema_check(kserve_schemas[kind], write(tmp_path, broken, "broken.yaml"))
    assert done.returncode == 1
    assert named in done.stdout + done.stderr


def test_int_or_string_quantities_take_both_forms(
    kserve, kserve_schemas, jsonschema_check, tmp_path
):
    isvc = copy.deepcopy(kserve["InferenceService"])
    isvc["spec"]["predictor"]["model"]["resources"]["limits"]["cpu"] = 2  # a number, not "2"
    done = jsonschema_check(kserve_schemas["InferenceService"], write(tmp_path, isvc, "i.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_runtime_serves_mnt_models_read_only_over_v2(kserve):
    runtime = kserve["ClusterServingRuntime"]
    spec, container = runtime["spec"], runtime_container(runtime)
    # /mnt/models holds ONNX files (Keras files are exported first): a runtime that claimed
    # keras would be Ready serving nothing. Triton claims onnx too: this runtime is chosen
    # by name, never taken by surprise.
    (model_format,) = spec["supportedModelFormats"]
    assert (model_format["name"], model_format["autoSelect"]) == ("onnx", False)
    assert spec["protocolVersions"] == ["v2"]
    assert container["name"] == "kserve-container"  # where KServe mounts /mnt/models
    assert container["command"] == ["layerserve", "serve"]
    variables = env(container)
    assert variables["LAYERSERVE_MODEL_REPOSITORY"] == "/mnt/models"
    assert variables["LAYERSERVE_READ_ONLY"] == "true"
    # Knative routes one port: the runtime's is HTTP; gRPC is the InferenceService's choice.
    (port,) = container["ports"]
    assert (port["name"], port["containerPort"]) == ("http1", int(variables["LAYERSERVE_PORT"]))
    assert int(variables["LAYERSERVE_GRPC_PORT"]) != port["containerPort"]
    assert variables["LAYERSERVE_REPOSITORY_POLL_SECONDS"] == "0"
    (port,) = container["ports"]
    assert port["containerPort"] == int(variables["LAYERSERVE_PORT"]) == 8080  # KServe's port
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    # The workers answer once the models are loaded: startup waits for that, liveness after.
    assert container["startupProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    assert spec["annotations"]["prometheus.kserve.io/port"] == variables["LAYERSERVE_PORT"]
    assert spec["annotations"]["prometheus.kserve.io/path"] == "/metrics"


def test_the_runtime_is_locked_down_with_its_scratch_space_mounted(kserve):
    runtime = kserve["ClusterServingRuntime"]
    container = runtime_container(runtime)
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in runtime["spec"]["volumes"]}
    mounted = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert set(mounted) == {"/tmp", "/dev/shm"}
    assert mounted["/dev/shm"]["emptyDir"]["medium"] == "Memory"


def test_the_inference_service_selects_the_runtime(kserve):
    runtime, isvc = kserve["ClusterServingRuntime"], kserve["InferenceService"]
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    declared = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in declared
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert model["storageUri"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/enable-prometheus-scraping"] == "true"


def test_the_runtime_environment_is_settings_the_server_accepts(kserve, monkeypatch):
    variables = env(runtime_container(kserve["ClusterServingRuntime"]))
    assert set(variables) <= {f"LAYERSERVE_{name.upper()}" for name in Settings.model_fields}
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.read_only is True
    assert settings.repository_poll_seconds == 0
    assert settings.workers == 0  # one per CPU of the container's limit


def test_the_grpc_runtime_routes_the_grpc_port_as_h2c(kserve, grpc_kserve):
    """KServe (and Knative) route gRPC to the container port named h2c; readiness asks the
    gRPC health service there (SERVING once every model is loaded), startup and liveness
    service "liveness", SERVING whenever a worker answers (once the models are loaded)."""
    runtime, isvc = grpc_kserve["ClusterServingRuntime"], grpc_kserve["InferenceService"]
    container = runtime_container(runtime)
    grpc_port = int(env(container)["LAYERSERVE_GRPC_PORT"])
    (port,) = container["ports"]
    assert (port["name"], port["containerPort"]) == ("h2c", grpc_port)
    assert container["readinessProbe"]["grpc"] == {"port": grpc_port}  # service "": overall
    liveness = {"port": grpc_port, "service": LIVENESS_SERVICE}  # SERVING while answering
    assert container["startupProbe"]["grpc"] == container["livenessProbe"]["grpc"] == liveness
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    # The same model as the REST example: only the protocol differs.
    rest = kserve["InferenceService"]["spec"]["predictor"]["model"]
    assert model["storageUri"] == rest["storageUri"]
    assert model["modelFormat"] == rest["modelFormat"]


PROTOCOL_FIELDS = ("protocolVersions", "ports", "startupProbe", "readinessProbe", "livenessProbe")


def test_the_two_runtimes_are_one_server_on_two_ports(kserve, grpc_kserve):
    """Everything but the name, the protocol, the routed port and the probes is the same."""
    rest, grpc = kserve["ClusterServingRuntime"], grpc_kserve["ClusterServingRuntime"]

    def without_protocol(runtime: dict[str, Any]) -> dict[str, Any]:
        runtime = copy.deepcopy(runtime)
        del runtime["metadata"]["name"], runtime["spec"]["protocolVersions"]
        for field in PROTOCOL_FIELDS:
            runtime_container(runtime).pop(field, None)
        return runtime

    assert without_protocol(rest) == without_protocol(grpc)
    assert rest["metadata"]["name"] != grpc["metadata"]["name"]


PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
# Knative's default progress deadline: a revision whose pods are not ready by then fails.
KNATIVE_PROGRESS_DEADLINE_S = 600


def merged_container(
    kubectl: str, runtime: dict[str, Any], isvc: dict[str, Any], tmp_path: Path
) -> dict[str, Any]:
    """The container KServe runs: the InferenceService's model spec merged into the
    runtime's container as KServe's MergeRuntimeContainers does (a strategic merge patch
    of a core/v1 Container), here by kubectl's own strategic merge."""
    container = runtime_container(runtime)
    model = {
        key: value
        for key, value in isvc["spec"]["predictor"]["model"].items()
        if key not in ("modelFormat", "runtime", "protocolVersion", "storageUri")
    }
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"}}
    pod["spec"] = {"containers": [container]}
    path = tmp_path / "pod.json"
    path.write_text(json.dumps(pod), encoding="utf-8")
    patch = {"spec": {"containers": [{"name": container["name"], **model}]}}
    done = subprocess.run(
        [kubectl, "patch", "--local", "-f", str(path), "--type", "strategic"]
        + ["-p", json.dumps(patch), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    (merged,) = json.loads(done.stdout)["spec"]["containers"]
    return merged


@pytest.mark.parametrize("protocol", ["v2", "grpc-v2"])
def test_kserve_merges_each_inference_service_into_a_container_knative_runs(
    manifests, kubectl_binary, protocol, tmp_path
):
    """One port (Knative routes one, and refuses a container with more), named for the
    protocol KServe routes to it, and every probe with one handler, on that port."""
    chosen = {obj["kind"]: obj for obj in manifests if protocol_of(obj) == protocol}
    container = merged_container(
        kubectl_binary, chosen["ClusterServingRuntime"], chosen["InferenceService"], tmp_path
    )
    (port,) = container["ports"]
    assert port["name"] == {"v2": "http1", "grpc-v2": "h2c"}[protocol]
    for probe in PROBES:
        (handler,) = [h for h in HANDLERS if h in container[probe]]
        assert container[probe][handler]["port"] == port["containerPort"], probe
    startup = container["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert 300 <= budget < KNATIVE_PROGRESS_DEADLINE_S  # models may load for minutes
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"}}
    pod["spec"] = {"containers": [container]}
    kubernetes_validate.validate(pod, "1.29", strict=True)
