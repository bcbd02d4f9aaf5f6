#!/usr/bin/env bash
# One command on a fresh machine: install, build the default model, start the whole stack.
# Extra arguments go to 'steward up' (for example --demo). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/steward up "$@"
