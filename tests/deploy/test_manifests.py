"""The Kubernetes manifests, checked without a cluster: every object validates against the
Kubernetes schemas (kubernetes-validate, strict: an unknown field is an error, as with
kubectl's default field validation), kustomize builds the base and each overlay, and the
built objects have the properties a production deployment of the server needs."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from layerserve.service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "docker" / "kubernetes"
# The oldest Kubernetes the manifests are written for, and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.29", "1.37")

OVERLAYS = ("overlays/shared-volume", "overlays/read-only")
BUILDS = ("base", *OVERLAYS)
BASE_FILES = sorted(
    p.name for p in (KUBERNETES / "base").glob("*.yaml") if p.name != "kustomization.yaml"
)
V2_LIVE, V2_READY = "/v2/health/live", "/v2/health/ready"


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return only(objects, "Deployment")["spec"]["template"]


def server(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = pod(objects)["spec"]["containers"]
    return container


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", ()) if "value" in e}


def mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container["volumeMounts"]}


def volumes(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in pod(objects)["spec"]["volumes"]}


def cpu_cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def image_uid() -> int:
    """The uid the Dockerfile creates its user with (an expectation apart from the manifests)."""
    return int(re.search(r"useradd [^\n]*--uid (\d+)", (REPO / "Dockerfile").read_text())[1])


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", BASE_FILES)
def test_every_base_manifest_validates(read_manifest, name, version):
    for obj in read_manifest(KUBERNETES / "base" / name):
        assert kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("build", BUILDS)
def test_kustomize_output_validates(kustomize, build, version):
    objects = kustomize(build)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "Service",
    ]
    for obj in objects:
        assert kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize(
    ("path", "wrong"),
    [
        # A misspelt field (the kind of slip strict validation is for) and a wrong type.
        (("securityContext", "readOnlyRootFileSystem"), True),
        (("readinessProbe", "periodSeconds"), "five"),
        # A gRPC probe takes the port's number: Kubernetes allows no name there.
        (("readinessProbe", "grpc"), {"port": "grpc"}),
    ],
)
def test_validation_refuses_a_broken_deployment(kustomize, path, wrong):
    deployment = copy.deepcopy(only(kustomize("base"), "Deployment"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container[path[0]][path[1]] = wrong
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("build", BUILDS)
def test_the_pod_runs_unprivileged_on_a_read_only_root(kustomize, build):
    objects = kustomize(build)
    spec, container = pod(objects)["spec"], server(objects)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == image_uid()
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]
    # What the server writes at run time is a volume: /tmp (runtime directory, upload
    # conversions) on disk, /dev/shm (spooled bodies) in memory, both bounded.
    writable, by_name = mounts(container), volumes(objects)
    tmp, shm = by_name[writable["/tmp"]["name"]], by_name[writable["/dev/shm"]["name"]]
    assert "medium" not in tmp["emptyDir"] and tmp["emptyDir"]["sizeLimit"]
    assert shm["emptyDir"]["medium"] == "Memory" and shm["emptyDir"]["sizeLimit"]
    limits = container["resources"]["limits"]
    assert limits["cpu"] and limits["memory"]
    assert container["resources"]["requests"] == limits  # Guaranteed QoS: never evicted first


@pytest.mark.parametrize("build", BUILDS)
def test_probes_ask_the_v2_health_endpoints_on_the_served_port(kustomize, build):
    container = server(kustomize(build))
    ports = {p["name"]: p for p in container["ports"]}
    assert set(ports) == {"http", "grpc"}
    assert ports["http"]["containerPort"] == int(env(container)["LAYERSERVE_PORT"])
    paths = {
        probe: (container[probe]["httpGet"]["path"], container[probe]["httpGet"]["port"])
        for probe in ("startupProbe", "livenessProbe")
    }
    assert paths == {"startupProbe": (V2_LIVE, "http"), "livenessProbe": (V2_LIVE, "http")}
    startup = container["startupProbe"]
    # the workers answer once the models found at the start are loaded, which may take minutes
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


@pytest.mark.parametrize("build", BUILDS)
def test_readiness_asks_the_grpc_health_service_on_the_grpc_port(kustomize, build):
    """grpc.health.v1 answers SERVING exactly when /v2/health/ready answers 200 (the server's
    tests show it); the probe asks the overall service ("", Kubernetes' default)."""
    container = server(kustomize(build))
    ports = {p["name"]: p for p in container["ports"]}
    grpc_port = int(env(container)["LAYERSERVE_GRPC_PORT"])
    assert ports["grpc"]["containerPort"] == grpc_port != ports["http"]["containerPort"]
    readiness = container["readinessProbe"]
    assert readiness["grpc"]["port"] == grpc_port
    assert readiness["grpc"].get("service", "") == ""
    assert "httpGet" not in readiness


@pytest.mark.parametrize("build", BUILDS)
def test_termination_outlasts_the_prestop_wait_the_drain_and_the_exit(kustomize, build):
    objects = kustomize(build)
    container, settings = server(objects), env(server(objects))
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    assert pre_stop >= 3  # endpoints updated before SIGTERM reaches the server
    needed = (
        pre_stop
        + float(settings["LAYERSERVE_DRAIN_SECONDS"])
        + float(settings["LAYERSERVE_EXIT_TIMEOUT_SECONDS"])
    )
    assert pod(objects)["spec"]["terminationGracePeriodSeconds"] > needed


@pytest.mark.parametrize("build", BUILDS)
def test_the_objects_find_each_other(kustomize, build):
    objects = kustomize(build)
    deployment, labels = only(objects, "Deployment"), pod(objects)["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the count
    service = only(objects, "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    container_ports = {p["name"]: p for p in server(objects)["ports"]}
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert set(service_ports) == set(container_ports) == {"http", "grpc"}
    for name, service_port in service_ports.items():
        assert service_port["targetPort"] == name
        assert service_port["port"] == container_ports[name]["containerPort"]
    assert service_ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"  # HTTP/2 cleartext
    pdb = only(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = only(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert hpa["spec"]["minReplicas"] >= 2  # a disruption budget of one leaves one serving
    claim = volumes(objects)["models"]["persistentVolumeClaim"]["claimName"]
    assert claim == only(objects, "PersistentVolumeClaim")["metadata"]["name"]
    models = mounts(server(objects))[env(server(objects))["LAYERSERVE_MODEL_REPOSITORY"]]
    assert models["name"] == "models"


@pytest.mark.parametrize("build", BUILDS)
def test_prometheus_scrapes_metrics_on_the_served_port(kustomize, build):
    objects = kustomize(build)
    annotations = pod(objects)["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == env(server(objects))["LAYERSERVE_PORT"]
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("build", BUILDS)
def test_workers_match_the_cpu_limit(kustomize, build):
    container = server(kustomize(build))
    workers = int(env(container)["LAYERSERVE_WORKERS"])
    assert workers == cpu_cores(container["resources"]["limits"]["cpu"])


@pytest.mark.parametrize("build", BUILDS)
def test_every_variable_is_a_setting_the_server_accepts(kustomize, build, monkeypatch, tmp_path):
    container = server(kustomize(build))
    assert container["command"] == ["layerserve", "serve"]
    variables = env(container)
    assert set(variables) <= {f"LAYERSERVE_{name.upper()}" for name in Settings.model_fields}
    for name, value in variables.items():
        if name.endswith("_FILE"):  # a mounted secret: here a file of the same kind
            value = str(tmp_path / "token")
            (tmp_path / "token").write_text("a-token\n")
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert str(settings.model_repository) == variables["LAYERSERVE_MODEL_REPOSITORY"]
    assert settings.port == int(variables["LAYERSERVE_PORT"])
    assert settings.grpc_port == int(variables["LAYERSERVE_GRPC_PORT"])


def test_the_base_shares_a_writable_volume_and_polls_it(kustomize):
    objects = kustomize("base")
    container = server(objects)
    assert only(objects, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteMany"]
    assert not mounts(container)["/models"].get("readOnly", False)
    assert float(env(container)["LAYERSERVE_REPOSITORY_POLL_SECONDS"]) > 0
    assert "LAYERSERVE_ADMIN_TOKEN_FILE" not in env(container)  # loopback (port-forward) only


def test_the_shared_volume_overlay_takes_uploads_with_an_admin_token(kustomize):
    objects = kustomize("overlays/shared-volume")
    container, variables = server(objects), env(server(objects))
    assert only(objects, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteMany"]
    assert variables["LAYERSERVE_READ_ONLY"] == "false"
    assert float(variables["LAYERSERVE_REPOSITORY_POLL_SECONDS"]) > 0
    assert not mounts(container)["/models"].get("readOnly", False)
    token = Path(variables["LAYERSERVE_ADMIN_TOKEN_FILE"])
    secret_mount = mounts(container)[str(token.parent)]
    assert secret_mount["readOnly"] is True
    secret = volumes(objects)[secret_mount["name"]]["secret"]
    assert token.name in [item["path"] for item in secret["items"]]
    assert secret["defaultMode"] & 0o007 == 0  # not world-readable


def test_the_read_only_overlay_mounts_models_read_only(kustomize):
    objects = kustomize("overlays/read-only")
    container, variables = server(objects), env(server(objects))
    assert variables["LAYERSERVE_READ_ONLY"] == "true"
    assert mounts(container)[variables["LAYERSERVE_MODEL_REPOSITORY"]]["readOnly"] is True
    assert volumes(objects)["models"]["persistentVolumeClaim"]["readOnly"] is True
    assert "LAYERSERVE_ADMIN_TOKEN_FILE" not in variables
    # Everything else is the base's.
    base = server(kustomize("base"))
    changed = {"LAYERSERVE_READ_ONLY", "LAYERSERVE_REPOSITORY_POLL_SECONDS"}
    assert {k: v for k, v in variables.items() if k not in changed} == {
        k: v for k, v in env(base).items() if k not in changed
    }


def test_the_compose_file_validates_against_the_compose_specification():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(REPO / "docker" / "compose.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "docker/Dockerfile.cuda"])
def test_the_images_expose_the_ports_the_deployment_serves(kustomize, dockerfile):
    text = (REPO / dockerfile).read_text()
    (exposed,) = re.findall(r"^EXPOSE (.+)$", text, re.MULTILINE)
    variables = env(server(kustomize("base")))
    ports = {variables["LAYERSERVE_PORT"], variables["LAYERSERVE_GRPC_PORT"]}
    assert set(exposed.split()) == ports
    for name in ("LAYERSERVE_PORT", "LAYERSERVE_GRPC_PORT"):
        assert re.search(rf"^\s+{name}={variables[name]}\b", text, re.MULTILINE), name


def test_compose_publishes_http_and_grpc_of_every_service_on_distinct_host_ports(read_manifest):
    (compose,) = read_manifest(REPO / "docker" / "compose.yaml")
    host_ports = []
    for name, service in compose["services"].items():
        published = dict(mapping.split(":")[::-1] for mapping in service["ports"])
        assert set(published) == {"8080", "8081"}, name  # container ports: HTTP, gRPC
        host_ports += published.values()
    assert len(host_ports) == len(set(host_ports))  # the services can run side by side
