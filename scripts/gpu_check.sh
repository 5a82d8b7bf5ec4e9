#!/usr/bin/env bash
# The GPU checks (issue 19), on a machine with a CUDA GPU: the `gpu` tests, then the
# throughput benchmark on the GPU, fp32 and bf16. Prints what BENCHMARKS.md needs.
#   bash scripts/gpu_check.sh            # about 10 minutes once set up
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! .venv/bin/python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "gpu_check: torch sees no CUDA GPU here ($(.venv/bin/python -c 'import torch; print(torch.__version__)')); nothing to check." >&2
    exit 2
fi
.venv/bin/python -c "import torch; print('GPU:', torch.cuda.get_device_name(), '| torch', torch.__version__, '| CUDA', torch.version.cuda)"
.venv/bin/python -m pytest -p no:cacheprovider -m gpu -rs -v tests
.venv/bin/python benchmarks/trainable_throughput.py --device cuda --precisions fp32,bf16
