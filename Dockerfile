# layerserve, CPU image: `docker build -t layerserve .` then
# `docker run -p 8080:8080 -p 8081:8081 -v layerserve-models:/models \
#     -e LAYERSERVE_ADMIN_TOKEN=<token> layerserve` (8080 HTTP, 8081 gRPC)
# (or LAYERSERVE_ADMIN_TOKEN_FILE=/run/secrets/<file>). Without an admin token, uploads
# and the other admin endpoints answer loopback clients only, which outside the container
# means nobody. /models is served as it is: add LAYERSERVE_DEMO=true to fill an empty one
# with the demo models, or mount your own Triton-layout repository there.
# The CUDA variant is docker/Dockerfile.cuda; docker/compose.yaml runs either.

# ---- builder: a virtual environment holding layerserve and its dependencies ----
FROM python:3.11-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/layerserve
WORKDIR /src
# The dependencies first (their own layer: it survives source edits), read from
# pyproject.toml so that the two never disagree.
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && /opt/layerserve/bin/pip install -r /tmp/requirements.txt
# Then the package itself (no dependencies left to resolve), compiled to bytecode.
COPY README.md ./
COPY layerserve ./layerserve
COPY layers ./layers
COPY export ./export
COPY service ./service
RUN /opt/layerserve/bin/pip install --no-deps . \
    && /opt/layerserve/bin/python -m compileall -q /opt/layerserve/lib

# ---- runtime: the same base, the venv, a non-root user -------------------------
FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --user-group --home-dir /home/layerserve --create-home \
        --shell /usr/sbin/nologin layerserve \
    && mkdir -p /models \
    && chown layerserve:layerserve /models
COPY --from=builder /opt/layerserve /opt/layerserve
# ORT_DISABLE_TELEMETRY: onnxruntime would otherwise keep a telemetry device id under
# ~/.cache, a write that a read-only root filesystem (Kubernetes) refuses with a warning
# from every worker.
ENV PATH=/opt/layerserve/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ORT_DISABLE_TELEMETRY=1 \
    LAYERSERVE_MODEL_REPOSITORY=/models \
    LAYERSERVE_HOST=0.0.0.0 \
    LAYERSERVE_PORT=8080 \
    LAYERSERVE_GRPC_PORT=8081
USER layerserve
WORKDIR /home/layerserve
VOLUME ["/models"]
# 8080: HTTP (REST, /metrics); 8081: every gRPC service (inference.GRPCInferenceService,
# TF Serving's, grpc.health.v1, reflection). LAYERSERVE_GRPC_PORT=0 turns gRPC off.
EXPOSE 8080 8081
# Ready: every model loaded and warmed, not draining (503 until then). Loading (or the
# demo export at the first start) takes a few seconds, hence the start period.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('LAYERSERVE_PORT', '8080')}/v2/health/ready\", timeout=2)"]
# Exec form: layerserve is PID 1 and gets SIGTERM itself (graceful drain).
CMD ["layerserve", "serve"]
