# syntax=docker/dockerfile:1
# Gateway image: the HTTP API and web page on 9696, calling the model server over gRPC.
# Build from the repository root:
#   docker build -f deploy/docker/gateway.Dockerfile -t clothing-classifier/gateway:0.1.0 .
# Point it at model servers with TF_SERVING_HOST (host:port, dns:///name:port or a comma list).

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
RUN python -m venv /opt/venv
# Every dependency by its hash: requirements/gateway.txt is the lock's share for the
# gateway extra alone (scripts/lock.py). Installed before the sources are copied, so
# a change to src/ reuses this layer.
COPY requirements/gateway.txt requirements/gateway.txt
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes -r requirements/gateway.txt
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
LABEL org.opencontainers.image.title="clothing-classifier gateway" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODEL_NAME=clothing-model \
    TF_SERVING_HOST=localhost:8500 \
    GATEWAY_LOG_FORMAT=json
RUN groupadd --system --gid 10001 clothing \
    && useradd --system --uid 10001 --gid clothing --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin clothing
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
WORKDIR /tmp
EXPOSE 9696
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9696/healthz', timeout=2)"]
# Exec form so SIGTERM reaches the server process directly.
ENTRYPOINT ["clothing", "gateway"]
CMD ["--host=0.0.0.0", "--port=9696"]
