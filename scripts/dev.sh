#!/usr/bin/env bash
# One entry point for a fresh machine: `bash scripts/dev.sh demo` runs the end-to-end demo,
# `bash scripts/dev.sh test` runs ruff (lint, format) and the default test suite (`test-slow` the long ones).
# Creates .venv and installs genprint with torch pinned to the CPU wheel (a bare `torch` pulls CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

setup() {
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  if ! .venv/bin/python -c "import genprint, torch, ray, mlflow, soundfile, pesq" 2>/dev/null || [ ! -x .venv/bin/ruff ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q "torch==2.13.0"
    .venv/bin/pip install -q -e ".[dev]"
  fi
  # From Debian: PostgreSQL 15 (the registry tests start a real cluster), espeak-ng (the speech corpus) and ffmpeg
  # (the audio codec attacks).
  if { [ ! -x /usr/lib/postgresql/15/bin/initdb ] || ! command -v espeak-ng >/dev/null || ! command -v ffmpeg >/dev/null; } \
    && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql espeak-ng ffmpeg >/dev/null
  fi
}

# Lint and format check first: seconds, and a red one says what to fix before the tests run.
lint() {
  .venv/bin/ruff check --no-cache .
  .venv/bin/ruff format --no-cache --check .
}

case "${1:-}" in
  demo) setup; shift; exec .venv/bin/genprint demo "$@" ;;
  test) setup; shift; lint; exec .venv/bin/python -m pytest -m "not slow" -p no:cacheprovider "$@" ;;
  test-slow) setup; shift; exec .venv/bin/python -m pytest -m slow -p no:cacheprovider "$@" ;;
  *) echo "usage: bash scripts/dev.sh demo|test|test-slow [args...]" >&2; exit 64 ;;
esac
