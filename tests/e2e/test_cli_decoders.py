"""End-to-end on tiny decoders: one CLI search per task kind (2 trials each), and the
decoder errors before Ray starts.

* sequence classification: a tiny GPT-2 on the 200-sentence task, in ``full-lora``,
  where GPT-2 refuses LoRA beside the other modules: no trial holds LoRA;
* causal-LM fine-tuning: a tiny Llama on the prompt/response fixture (``--causal-lm``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autopeft_ray.cli import main
from autopeft_ray.objectives import PEAK_MEMORY

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BUDGET = [
    "--max-steps",
    "2",
    "--max-length",
    "32",
    "--batch-size",
    "8",
    "--max-eval-examples",
    "16",
    "--searcher",
    "random",
    "--initial",
    "2",
    "--model-based",
    "0",
    "--concurrency",
    "2",
    "--cpus-per-trial",
    "1",
    "--space",
    "full-lora",
]


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "trials.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_classification_search_on_gpt2(ray_session, tmp_cache, tiny_decoders, tmp_path) -> None:
    out = tmp_path / "gpt2"
    argv = ["search", "--model", tiny_decoders["gpt2"], "--task", "pang_lee_polarity"]
    assert main([*argv, *BUDGET, "--output", str(out)]) == 0
    records = _records(out)
    assert [r["status"] for r in records] == ["completed"] * 2
    for record in records:
        assert record["configuration"]["lora_rank"] == 0  # refused on GPT-2 beside others
        assert record["metrics"][PEAK_MEMORY] > 0 and "metric_accuracy" in record["metrics"]
    saved = json.loads((out / "search.json").read_text())
    assert saved["settings"]["task"] == "pang_lee_polarity"
    assert "peak memory (GiB)" in (out / "report" / "report.md").read_text()


@pytest.mark.slow
def test_causal_lm_search_on_llama(ray_session, tmp_cache, tiny_decoders, tmp_path) -> None:
    out = tmp_path / "llama"
    task = ["--task", str(FIXTURES / "prompt_response.csv"), "--causal-lm"]
    argv = ["search", "--model", tiny_decoders["llama"], *task]
    assert main([*argv, *BUDGET, "--output", str(out)]) == 0
    records = _records(out)
    assert [r["status"] for r in records] == ["completed"] * 2
    for record in records:
        metrics = record["metrics"]
        assert 0.0 <= metrics["score"] == metrics["metric_token_accuracy"] <= 1.0
        assert metrics["metric_neg_loss"] < 0 and metrics[PEAK_MEMORY] > 0
    task_spec = json.loads((out / "search.json").read_text())["settings"]["task"]
    assert task_spec["kind"] == "causal_lm" and task_spec["text_columns"] == ["prompt", "response"]


def test_causal_lm_on_the_offline_encoder_fails_before_ray(capsys, tmp_path) -> None:
    import ray

    was_running = ray.is_initialized()
    argv = ["search", "--task", "pang_lee_polarity", "--causal-lm", "--output", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Causal-LM fine-tuning needs a decoder" in err and "'bert'" in err
    assert "Traceback" not in err and ray.is_initialized() == was_running


def test_causal_lm_flag_turns_a_registered_task_into_its_text() -> None:
    from autopeft_ray.cli import _settings, build_parser

    parser = build_parser()
    args = parser.parse_args(["search", "--task", "pang_lee_polarity", "--causal-lm"])
    task = _settings(args).task
    assert isinstance(task, dict) and task["name"] == "pang_lee_polarity_lm"
    assert task["kind"] == "causal_lm" and task["score_metrics"] == ["token_accuracy"]
    by_loss = parser.parse_args(
        ["search", "--task", "pang_lee_polarity", "--causal-lm", "--metric", "neg_loss"]
    )
    assert _settings(by_loss).task["score_metrics"] == ["neg_loss"]


def test_causal_lm_refuses_label_flags_on_a_registered_task(capsys, tmp_path) -> None:
    argv = ["search", "--task", "pang_lee_polarity", "--causal-lm", "--label-column", "y"]
    assert main([*argv, "--output", str(tmp_path)]) == 2
    assert "--label-column cannot change it" in capsys.readouterr().err
