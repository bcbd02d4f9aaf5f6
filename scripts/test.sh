#!/usr/bin/env bash
# The test command of README.md and CI: install, then run the default suite (unit,
# integration against real tansu and nx-27017, and the end-to-end path).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python -m pytest -m "not slow" "$@"
