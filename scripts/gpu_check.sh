#!/usr/bin/env bash
# The GPU checks (issue 19), on a machine with a CUDA GPU: the `gpu` tests, then the
# throughput benchmark on the GPU, fp32 and bf16, then a decoder search per task kind.
# Prints what BENCHMARKS.md needs.
#   bash scripts/gpu_check.sh            # about 12 minutes once set up
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

# Decoders on the GPU: tiny random GPT-2 and Llama checkpoints built here from a config (no
# download), one search per task kind, two trials sharing the GPU (0.5 each). Each trial
# must have trained on cuda and report its peak GPU memory.
decoders=$(mktemp -d)
.venv/bin/python -c "
import sys
from autopeft_ray.testing.tiny import tiny_checkpoint
for family in ('gpt2', 'llama'):
    tiny_checkpoint(f'{sys.argv[1]}/{family}', family, num_layers=2, hidden_size=64)
" "$decoders"
budget=(--max-steps 16 --max-length 64 --batch-size 16 --max-eval-examples 64 --searcher random
        --initial 2 --model-based 0 --concurrency 2 --cpus-per-trial 1 --gpus-per-trial 0.5
        --space full-lora)
.venv/bin/autopeft-ray search --model "$decoders/gpt2" --task pang_lee_polarity "${budget[@]}" \
    --output "$decoders/runs/gpt2-classification"
.venv/bin/autopeft-ray search --model "$decoders/llama" --task tests/fixtures/prompt_response.csv \
    --causal-lm "${budget[@]}" --output "$decoders/runs/llama-causal-lm"
.venv/bin/python - "$decoders/runs" <<'PY'
import json, sys
from pathlib import Path

for run in sorted(Path(sys.argv[1]).iterdir()):
    for line in (run / "trials.jsonl").read_text().splitlines():
        record = json.loads(line)
        metrics = record["metrics"]
        print(f"{run.name}: {record['status']} score {metrics.get('score')} on "
              f"{metrics.get('device')} ({metrics.get('precision')}), peak "
              f"{metrics.get('peak_memory_gib', float('nan')):.3f} GiB")
        assert record["status"] == "completed", record
        assert str(metrics["device"]).startswith("cuda"), metrics
PY
rm -rf "$decoders"
