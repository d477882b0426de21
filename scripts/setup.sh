#!/usr/bin/env bash
# Create .venv, install the pinned dependencies (again only when requirements.txt changed) and the
# `holdout` command-line client (again only when pyproject.toml changed).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ requirements.txt -nt .venv/.installed ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements.txt
  touch .venv/.installed
fi
# Editable, so the client's code is read from holdout_cli/ and only pyproject.toml needs a
# reinstall; no build isolation and no dependencies, so it works offline once the venv has them.
# The setuptools a new venv starts with (65) builds wheels only with the separate `wheel` package;
# 70.1 and later build them alone; pinned like everything else.
if [ ! -f .venv/.client-installed ] || [ pyproject.toml -nt .venv/.client-installed ]; then
  .venv/bin/python -m pip install --quiet "setuptools==84.2.1"
  .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
  touch .venv/.client-installed
fi
