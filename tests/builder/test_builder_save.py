"""Saved adapters load into a fresh model with plain ``adapters`` and give the same logits.

On a tiny BERT model built from a config (6 layers, width 32, random weights).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from autopeft_ray.builder import (
    HEAD_FILE,
    SETUP_FILE,
    BuiltModel,
    build_peft_model,
    load_adapters,
    save_adapters,
)
from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.space import PeftConfiguration

SOME = (True, False, True, False, False, True)


@pytest.fixture
def model(tiny_models: dict[str, str]) -> str:
    return tiny_models["bert"]


def _fresh(model: str) -> Any:
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(model, num_labels=2)


def _logits(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def _trained(model: str, configuration: PeftConfiguration | str) -> BuiltModel:
    """A built model whose trainable weights all moved away from their initial values."""
    built = build_peft_model(model, configuration, num_labels=2, seed=0)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in built.model.parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=gen) * 0.05)
    return built


@pytest.mark.parametrize(
    "configuration",
    [
        PeftConfiguration(8, 4, 2, SOME),
        PeftConfiguration(8, 4, 2, SOME, lora_rank=4),
        PeftConfiguration(0, 0, 0, SOME),
        "lora",
        "unipelt",
    ],
    ids=["sa+pa+pt", "sa+pa+pt+lora", "head-only", "lora", "unipelt"],
)
def test_round_trip_gives_the_same_logits(
    model: str, batch: dict[str, Any], tmp_path: Path, configuration: Any
) -> None:
    built = _trained(model, configuration)
    expected = _logits(built.model, batch)
    save_adapters(built, tmp_path)
    assert json.loads((tmp_path / SETUP_FILE).read_text()) == built.setup
    fresh = _fresh(model)
    assert not torch.allclose(_logits(fresh, batch), expected, atol=1e-3)
    load_adapters(fresh, tmp_path)
    assert torch.allclose(_logits(fresh, batch), expected, atol=1e-5)


def test_plain_adapters_reload_without_this_project(
    model: str, batch: dict[str, Any], tmp_path: Path
) -> None:
    """What a user does with plain adapters: load each folder and the head, activate Stack(*active)."""
    import adapters
    from adapters.composition import Stack
    from safetensors.torch import load_file

    built = _trained(model, PeftConfiguration(8, 0, 2, SOME))
    expected = _logits(built.model, batch)
    save_adapters(built, tmp_path)
    setup = json.loads((tmp_path / SETUP_FILE).read_text())
    assert setup["composition"] == "stack"

    fresh = _fresh(model)
    adapters.init(fresh)
    for name in setup["active"]:
        fresh.load_adapter(str(tmp_path / name))
    fresh.set_active_adapters(Stack(*setup["active"]))
    assert not torch.allclose(_logits(fresh, batch), expected, atol=1e-3)  # trained head missing
    fresh.load_state_dict(load_file(str(tmp_path / HEAD_FILE)), strict=False)
    assert torch.allclose(_logits(fresh, batch), expected, atol=1e-5)


def test_both_bottlenecks_need_the_composition(
    model: str, batch: dict[str, Any], tmp_path: Path
) -> None:
    import adapters
    from adapters.composition import Stack
    from safetensors.torch import load_file

    from autopeft_ray.builder.composition import enable_parallel_then_serial

    built = _trained(model, PeftConfiguration(8, 4, 0, SOME))
    expected = _logits(built.model, batch)
    save_adapters(built, tmp_path)
    fresh = _fresh(model)
    adapters.init(fresh)
    for name in built.setup["active"]:
        fresh.load_adapter(str(tmp_path / name))
    fresh.load_state_dict(load_file(str(tmp_path / HEAD_FILE)), strict=False)
    fresh.set_active_adapters(Stack(*built.setup["active"]))
    assert not torch.allclose(_logits(fresh, batch), expected, atol=1e-3)  # stock Stack
    enable_parallel_then_serial(fresh)
    assert torch.allclose(_logits(fresh, batch), expected, atol=1e-5)


def test_full_fine_tuning_saves_a_whole_model(
    model: str, batch: dict[str, Any], tmp_path: Path
) -> None:
    from transformers import AutoModelForSequenceClassification

    built = build_peft_model(model, "full", num_labels=2, seed=0)
    with torch.no_grad():
        built.model.base_model.encoder.layer[0].output.dense.bias.add_(0.5)
    expected = _logits(built.model, batch)
    save_adapters(built, tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")
    assert torch.allclose(_logits(reloaded, batch), expected, atol=1e-5)
    with pytest.raises(ConfigurationError, match="from_pretrained"):
        load_adapters(_fresh(model), tmp_path)


def test_loading_a_folder_without_setup_fails(model: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="`directory`"):
        load_adapters(_fresh(model), tmp_path)
