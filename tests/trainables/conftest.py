"""The trainable tests' tiny settings (test modules derive theirs with ``.replace``)."""

from __future__ import annotations

import pytest

from autopeft_ray.config import TrainingSettings


@pytest.fixture(scope="module")
def settings(tmp_cache, tiny_models) -> TrainingSettings:
    """A tiny BERT (6 layers, width 32, random weights) on the 200-sentence real task, short
    sequences, 6 steps, 3 evaluations of 16 examples."""
    return TrainingSettings(
        model=tiny_models["bert"],
        task="pang_lee_polarity",
        max_length=48,
        batch_size=8,
        max_steps=6,
        num_evaluations=3,
        max_eval_examples=16,
        cache_dir=tmp_cache,
    )
