# syntax=docker/dockerfile:1
# Model server image: TF Serving's gRPC (8500) and REST (8501) APIs on ONNX Runtime.
# Build from the repository root:
#   docker build -f deploy/docker/model-server.Dockerfile -t clothing-classifier/model-server:0.1.0 .
# Both copies of the bundled model are baked in: /models/clothing-model-int8/<version>, served
# by default (CPUs), and the float32 original /models/clothing-model/<version> (GPUs: set
# MODEL_BASE_PATH to it). Mount another model repository and point MODEL_BASE_PATH at it
# to serve it instead.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
RUN python -m venv /opt/venv
# Every dependency by its hash: requirements/server.txt is the lock's share for the
# server extra alone (scripts/lock.py). Installed before the sources are copied, so
# a change to src/ reuses this layer.
COPY requirements/server.txt requirements/server.txt
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes -r requirements/server.txt
# Then the project itself, without dependencies (pip checks no hash of a local folder).
# The runtime never installs anything: pip and setuptools (23 MB) stay behind.
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps . \
    && /opt/venv/bin/python -m pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE} AS runtime
# The commit and repository the image was built from (deploy/eks/push-images.sh
# passes both; a plain build says "unknown").
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="clothing-classifier model server" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODEL_NAME=clothing-model \
    MODEL_BASE_PATH=/models/clothing-model-int8 \
    MODEL_SERVER_LOG_FORMAT=json
RUN groupadd --system --gid 10001 clothing \
    && useradd --system --uid 10001 --gid clothing --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin clothing
COPY --from=builder /opt/venv /opt/venv
# Owned by root and read-only for the server: it only ever reads its models.
COPY models/clothing-model /models/clothing-model
COPY models/clothing-model-int8 /models/clothing-model-int8
USER 10001:10001
WORKDIR /tmp
EXPOSE 8500 8501
# Slim images have no curl; the standard library is enough for a probe.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/readyz', timeout=2)"]
# Exec form: the server is PID 1 and receives SIGTERM itself, so it drains in-flight
# requests before exiting.
ENTRYPOINT ["clothing", "model-server"]
CMD ["--host=0.0.0.0", "--port=8500", "--rest_api_port=8501"]
