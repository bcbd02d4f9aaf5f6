#!/usr/bin/env bash
# Create .steward/compose-venv with docker-compose 1.29.2, the compose validator that works
# offline (`docker-compose -f docker-compose.yml config -q` needs no Docker engine).
#
# docker-compose 1.29.2 needs PyYAML < 6, and PyYAML 5.4.1 only builds with Cython < 3
# (its setup.py breaks with Cython 3), so it is built without build isolation against a
# Cython 2 installed in the same venv first. The docker SDK is held below 7, whose API
# changed under docker-compose 1.x.
#
# Idempotent and cached: a venv whose stamp matches this script's pins is reused as is
# (pip's wheel cache also makes a rebuild quick). Prints the venv's bin folder (absolute) on
# stdout; everything else goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${STEWARD_COMPOSE_VENV:-.steward/compose-venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

PINS=(
  "docker-compose==1.29.2"
  "pyyaml==5.4.1"
  "docker>=5,<7"
  "requests>=2.20,<2.32"
)
STAMP="$VENV/.steward-compose-stamp"
WANT="v1 ${PINS[*]}"

if [ -x "$VENV/bin/docker-compose" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] \
    && "$VENV/bin/docker-compose" version --short >/dev/null 2>&1; then
  echo "$(cd "$VENV" && pwd)/bin"
  exit 0
fi

started=$(date +%s)
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install "cython<3" wheel "setuptools<72" >&2
"${PIP[@]}" install --no-build-isolation "pyyaml==5.4.1" >&2
"${PIP[@]}" install "${PINS[@]}" >&2
"$VENV/bin/docker-compose" version --short >&2
echo "$WANT" >"$STAMP"
echo "compose-venv: built $VENV in $(( $(date +%s) - started ))s" >&2
echo "$(cd "$VENV" && pwd)/bin"
