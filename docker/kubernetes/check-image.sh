#!/usr/bin/env bash
# Build the CPU image and run it as the read-only overlay's Deployment does: the same
# command, args and environment, read from `kubectl kustomize`, with container-check
# (../shared/tools/container-check: buildah, host network, no volumes; needs root).
# Before the Deployment's command starts, check_in_image.py (run in the image) fills its
# model repository with the demo models, makes it read-only, starts the command on a spare
# port and checks that inference answers as onnxruntime does, that the gRPC health service
# answers SERVING, that upload and delete answer 403, and that SIGTERM drains and exits 0.
# container-check then waits for the readiness probe's URL (for a gRPC readiness probe,
# /v2/health/ready on the http port: the same readiness, and container-check asks URLs).
#   usage: docker/kubernetes/check-image.sh [OVERLAY]   (default: overlays/read-only)
# CONTAINER_CHECK names another container-check; KUBECTL and PYTHON another kubectl or a
# Python with PyYAML (default: the repository's .venv, which has both).
set -euo pipefail
cd "$(dirname "$0")/../.."

overlay=docker/kubernetes/${1:-overlays/read-only}
check=${CONTAINER_CHECK:-../shared/tools/container-check}
python=${PYTHON:-.venv/bin/python}
kubectl=${KUBECTL:-$(command -v .venv/bin/kubectl || command -v kubectl || true)}
[ -x "$check" ] || { echo "check-image: no container-check at $check" >&2; exit 1; }
[ -n "$kubectl" ] || { echo "check-image: no kubectl (pip install -e .[test])" >&2; exit 1; }

# The Deployment's container as lines: ENV NAME=VALUE, CMD ARG, URL READINESS-URL.
spec=$("$kubectl" kustomize "$overlay" | "$python" -c '
import sys, yaml
(deployment,) = [d for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] == "Deployment"]
(container,) = deployment["spec"]["template"]["spec"]["containers"]
for e in container.get("env", []):
    if "value" not in e:
        sys.exit("check-image: " + e["name"] + " comes from valueFrom: pick an overlay without")
    print("ENV " + e["name"] + "=" + e["value"])
for arg in container.get("command", []) + container.get("args", []):
    print("CMD " + arg)
probe = container["readinessProbe"]
ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
if "grpc" in probe:
    # container-check waits for a URL: /v2/health/ready answers 200 exactly when the gRPC
    # health service answers SERVING (check_in_image.py asks the latter itself).
    print("URL http://127.0.0.1:%s/v2/health/ready" % ports["http"])
else:
    get = probe["httpGet"]
    print("URL http://127.0.0.1:%s%s" % (ports.get(get["port"], get["port"]), get["path"]))
')
envs=() command=() url=
while IFS= read -r line; do
    case $line in
        "ENV "*) envs+=(-e "${line#ENV }") ;;
        "CMD "*) command+=("${line#CMD }") ;;
        "URL "*) url=${line#URL } ;;
    esac
done <<<"$spec"
[ ${#command[@]} -gt 0 ] && [ -n "$url" ] || { echo "check-image: no command or probe" >&2; exit 1; }
# A server stopped just before (CI's first container check) may still be draining.
for _ in $(seq 60); do
    curl -s -o /dev/null --max-time 2 "$url" || break
    sleep 0.5
done
if curl -s -o /dev/null --max-time 2 "$url"; then
    echo "check-image: something still answers $url after 30 s; stop it first" >&2
    exit 1
fi

echo "check-image: $overlay: ${command[*]} ${envs[*]}; probe $url" >&2
exec "$check" -f Dockerfile -c . -u "$url" -t 240 "${envs[@]}" \
    -- python3 -c "$(cat docker/kubernetes/check_in_image.py)" "${command[@]}"
