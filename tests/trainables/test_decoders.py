"""The training loop on tiny GPT-2, Llama and Mistral models: a few steps on one batch with a
falling loss, for sequence classification and causal-LM fine-tuning (prompt and response),
the dev score of each, the head-only causal LM, and peak memory in every result."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autopeft_ray.config import TrainingSettings, trial_config
from autopeft_ray.models import CAUSAL_LM
from autopeft_ray.objectives import PEAK_MEMORY, SCORE
from autopeft_ray.space import PeftConfiguration
from autopeft_ray.space.support import DECODER_FAMILIES
from autopeft_ray.tasks import prepare_data, task_from_data
from autopeft_ray.trainables import TrainingRun, run_training

PROMPTS = Path(__file__).resolve().parents[1] / "fixtures" / "prompt_response.csv"
STEPS = 8


def _settings(model: str, kind: str, cache: str) -> TrainingSettings:
    """One batch of 8 examples seen at every step, a high learning rate: the loss must fall."""
    task: str | dict = "pang_lee_polarity"
    if kind == CAUSAL_LM:
        task = task_from_data(PROMPTS, causal_lm=True).to_dict()
    return TrainingSettings(
        model=model,
        task=task,
        max_length=32,
        batch_size=8,
        train_examples=8,
        max_steps=STEPS,
        max_eval_examples=8,
        learning_rate=1e-2,
        cache_dir=cache,
    )


def _configuration(family: str) -> PeftConfiguration:
    # GPT-2 takes LoRA only alone (autopeft_ray.space.support): the other three there.
    return PeftConfiguration(8, 4, 2, (True, True), lora_rank=0 if family == "gpt2" else 2)


@pytest.mark.parametrize("kind", ["sequence_classification", CAUSAL_LM])
@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_a_few_steps_lower_the_loss_and_report_memory(
    tiny_decoders, tmp_cache, family, kind
) -> None:
    torch.set_num_threads(1)
    settings = _settings(tiny_decoders[family], kind, tmp_cache)
    run = TrainingRun(settings, _configuration(family), prepare_data(settings))
    losses = []
    for step in range(1, STEPS + 1):
        run.train_until(step)
        losses.append(float(run._last_loss))
    assert sum(losses[-2:]) / 2 < losses[0], losses
    result = run.result(run.evaluate())
    assert result[PEAK_MEMORY] > 0.05  # GiB: this process holds at least torch
    assert result["trainable_params"] == run.built.trainable_params > 0
    if kind == CAUSAL_LM:
        assert 0.0 <= result["metric_token_accuracy"] <= 1.0
        assert result["metric_neg_loss"] < 0 and result[SCORE] == result["metric_token_accuracy"]
    else:
        assert 0.0 <= result[SCORE] <= 1.0 and "metric_accuracy" in result


def test_head_only_causal_lm_trains_nothing_and_scores_the_base_model(
    tiny_decoders, tmp_cache
) -> None:
    settings = _settings(tiny_decoders["llama"], CAUSAL_LM, tmp_cache).replace(max_steps=2)
    results: list = []
    run = run_training(
        trial_config(PeftConfiguration(0, 0, 0, (False, False)), settings),
        lambda result, folder: results.append(result),
    )
    assert run.built.trained_params == 0 and results[-1]["trainable_params"] == 0
    assert results[-1]["fidelity"] == 2 and results[-1]["train_loss"] > 0
    assert 0.0 <= results[-1][SCORE] <= 1.0 and results[-1][PEAK_MEMORY] > 0
