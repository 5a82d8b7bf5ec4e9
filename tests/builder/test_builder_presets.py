"""The paper's baselines as presets, built on the real offline model."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from autopeft_ray.builder import build_peft_model
from autopeft_ray.builder.presets import PRESET_NAMES, get_preset
from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.models import DEFAULT_MODEL
from autopeft_ray.objectives.cost import ParamCost
from autopeft_ray.space import WIDEST_VARIANT, PeftConfiguration, SearchSpace

H, L = 384, 6
BASE = 22_713_216  # BertModel (pooler included) of all-MiniLM-L6-v2


def _bottleneck(d: int) -> int:
    return 2 * H * d + d + H


def _gate() -> int:
    return H + 1  # Linear(hidden, 1) per gated module and layer


#: Deployable parameters, from each method's adapters defaults (h=384, 6 layers).
EXPECTED = {
    "full": BASE,
    "serial": L * _bottleneck(H // 16),  # SeqBnConfig: reduction_factor 16
    "parallel": L * _bottleneck(H // 2),  # ParBnConfig: reduction_factor 2
    "prefix": L * 2 * 30 * H,  # PrefixTuningConfig: prefix_length 30 (flat after ejection)
    "lora": L * 2 * (2 * 8 * H),  # LoRAConfig: r=8 on query and value
    "mam": L * 2 * 30 * H + L * _bottleneck(H // 2),  # prefix 30 + ParBnConfig
    # UniPELT: gated prefix 10 + gated SeqBn (16) + gated LoRA r=8 on q and v.
    "unipelt": L * (2 * 10 * H + _gate())
    + L * (_bottleneck(H // 16) + _gate())
    + L * 2 * (2 * 8 * H + _gate()),
}


def test_every_preset_is_listed() -> None:
    assert set(PRESET_NAMES) == set(EXPECTED)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_preset_builds_trains_and_counts(batch: dict[str, Any], name: str) -> None:
    built = build_peft_model(DEFAULT_MODEL, name, num_labels=2, seed=0)
    model = built.model
    model.train()
    model(**batch).loss.backward()
    head = [p for n, p in model.named_parameters() if n.startswith(("classifier.", "bert.pooler."))]
    assert len(head) == 4 and all(p.requires_grad and p.grad is not None for p in head)
    base_trained = [p for p in model.base_model.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in base_trained)
    assert built.base_params == BASE
    assert built.trainable_params == EXPECTED[name]
    if name == "full":
        assert built.param_fraction == 1.0
        assert built.trained_params == BASE + 2 * H + 2  # and the output layer (pooler in BASE)
    else:
        assert built.setup["active"] == [name]
        assert 0 < built.param_fraction < 0.05
        # Only the preset's modules train in the base model.
        original = {
            n
            for n, _ in model.base_model.named_parameters()
            if f".{name}." not in n and not n.startswith("pooler.")
        }
        assert all(
            not p.requires_grad for n, p in model.base_model.named_parameters() if n in original
        )


def test_unknown_preset_names_the_valid_ones() -> None:
    with pytest.raises(ConfigurationError) as caught:
        get_preset("adapter")
    message = str(caught.value)
    assert "`configuration`" in message and "'adapter'" in message
    assert all(repr(name) in message for name in PRESET_NAMES)


#: Presets that are points of the widest space (``full-lora``), and those that are not.
POINTS = {"lora": PeftConfiguration(0, 0, 0, (True,) * L, lora_rank=8)}
NOT_POINTS = {
    "serial": "its size, 384 / 16 = 24, is not a power of two",
    "parallel": "its size, 384 / 2 = 192, is not a power of two",
    "prefix": "its length, 30, is not a power of two",
    "mam": "its prefix length 30 and parallel size 192 are not powers of two",
    "unipelt": "it gates its modules",
    "full": "it trains every weight",
}


def test_every_preset_is_a_point_or_says_why_not() -> None:
    assert set(POINTS) | set(NOT_POINTS) == set(PRESET_NAMES)


@pytest.mark.parametrize("name", sorted(POINTS))
def test_a_preset_that_is_a_point_builds_that_points_model(name: str) -> None:
    point = SearchSpace(L, H, WIDEST_VARIANT).validate(POINTS[name])
    preset = build_peft_model(DEFAULT_MODEL, name, num_labels=2, seed=3)
    built = build_peft_model(DEFAULT_MODEL, point, num_labels=2, seed=3)
    assert preset.setup["adapters"][name] == built.setup["adapters"][name]
    assert preset.trainable_params == built.trainable_params == EXPECTED[name]
    assert preset.param_fraction == ParamCost.from_model(DEFAULT_MODEL)(point)
    # The same modules under the same names, with the same initial weights.
    trained = {n: p for n, p in preset.model.named_parameters() if p.requires_grad}
    same = {n: p for n, p in built.model.named_parameters() if p.requires_grad}
    assert sorted(trained) == sorted(same)
    assert all(torch.equal(trained[n], same[n]) for n in trained)


@pytest.mark.parametrize("name", sorted(set(NOT_POINTS) - {"full", "unipelt"}))
def test_a_preset_that_is_not_a_point_has_a_size_outside_the_space(name: str) -> None:
    space = SearchSpace(L, H, WIDEST_VARIANT)
    config = get_preset(name).adapter_config().to_dict()
    sizes = {c["prefix_length"] for c in _configs(config) if "prefix_length" in c} | {
        H // c["reduction_factor"] for c in _configs(config) if "reduction_factor" in c
    }
    assert sizes and not sizes <= set(space.sizes), NOT_POINTS[name]


def _configs(config: dict[str, Any]) -> list[dict[str, Any]]:
    return config.get("configs") or [config]
