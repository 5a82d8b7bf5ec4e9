"""Trained parameters by learning-rate group, on tiny BERT and RoBERTa models built by ``adapters``."""

from __future__ import annotations

import pytest

from autopeft_ray.builder import (
    PRESET_NAMES,
    build_peft_model,
    parameter_groups,
    task_head_parameters,
)
from autopeft_ray.space import PeftConfiguration

ALL = (True,) * 6

#: Groups that train, per configuration or preset.
EXPECTED = {
    "sa": (PeftConfiguration(8, 0, 0, ALL), {"head", "sa"}),
    "pa": (PeftConfiguration(0, 8, 0, ALL), {"head", "pa"}),
    "pt": (PeftConfiguration(0, 0, 4, ALL), {"head", "pt"}),
    "sa+pa+pt": (PeftConfiguration(8, 4, 2, ALL), {"head", "sa", "pa", "pt"}),
    "lora-rank": (PeftConfiguration(0, 0, 0, ALL, lora_rank=4), {"head", "lora"}),
    "sa+pa+pt+lora": (
        PeftConfiguration(8, 4, 2, ALL, lora_rank=2),
        {"head", "sa", "pa", "pt", "lora"},
    ),
    "head-only": (PeftConfiguration(0, 0, 0, ALL), {"head"}),
    "full": ("full", {"head", "base"}),
    "serial": ("serial", {"head", "sa"}),
    "parallel": ("parallel", {"head", "pa"}),
    "prefix": ("prefix", {"head", "pt"}),
    "lora": ("lora", {"head", "lora"}),
    "mam": ("mam", {"head", "pa", "pt"}),
    "unipelt": ("unipelt", {"head", "sa", "pt", "lora"}),
}


def test_every_preset_is_covered() -> None:
    assert set(PRESET_NAMES) <= set(EXPECTED)


@pytest.mark.parametrize("family", ["bert", "roberta"])
@pytest.mark.parametrize("name", EXPECTED)
def test_every_trained_parameter_is_in_exactly_one_group(
    tiny_models: dict[str, str], family: str, name: str
) -> None:
    configuration, expected = EXPECTED[name]
    built = build_peft_model(tiny_models[family], configuration, num_labels=2, seed=0)
    head = task_head_parameters(built.model)
    groups = parameter_groups(built.model, head)
    assert set(groups) == expected
    grouped = [id(p) for params in groups.values() for p in params]
    trained = [id(p) for p in built.model.parameters() if p.requires_grad]
    assert sorted(grouped) == sorted(trained)  # each once, none left out
    assert {id(p) for p in groups["head"]} == {id(p) for p in head}
    # The head: BERT's pooler and classifier, RoBERTa's classifier (dense, output): 4 tensors.
    assert len(groups["head"]) == 4
