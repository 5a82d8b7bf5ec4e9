#!/usr/bin/env bash
# The one test command: set up what is missing, then lint, format check, type check, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export RAY_USAGE_STATS_ENABLED=0
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# Two workers (pytest-xdist): on 2 cores the suite's end-to-end tests spend most of
# their time waiting (subprocesses starting, Ray scheduling), so a second worker fills
# the idle core (BENCHMARKS.md, "Test suite time"). PYTEST_WORKERS=0 runs in one process.
# The multinode tests start their own Ray nodes: beside a second worker they missed their
# 120 s start-up (2026-12-02), so with no arguments they run after, in one process.
if [ $# -eq 0 ]; then
    .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadgroup --ignore=tests/e2e/cluster
    .venv/bin/python -m pytest -n 0 tests/e2e/cluster
else
    .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadgroup "$@"
fi
