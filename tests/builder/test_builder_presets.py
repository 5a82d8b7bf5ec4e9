"""The paper's baselines as presets, built on tiny BERT and RoBERTa models (6 layers, width 32)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from autopeft_ray.builder import build_peft_model
from autopeft_ray.builder.presets import PRESET_NAMES, get_preset
from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.objectives.cost import ParamCost
from autopeft_ray.space import WIDEST_VARIANT, PeftConfiguration, SearchSpace

H, L = 32, 6


def _bottleneck(d: int, h: int = H) -> int:
    return 2 * h * d + d + h


def _gate(h: int = H) -> int:
    return h + 1  # Linear(hidden, 1) per gated module and layer


def expected(name: str, base: int, h: int = H, layers: int = L) -> int:
    """Deployable parameters of a preset, from each method's adapters defaults."""
    return {
        "full": base,
        "serial": layers * _bottleneck(h // 16, h),  # SeqBnConfig: reduction_factor 16
        "parallel": layers * _bottleneck(h // 2, h),  # ParBnConfig: reduction_factor 2
        "prefix": layers * 2 * 30 * h,  # PrefixTuningConfig: prefix_length 30 (flat, ejected)
        "lora": layers * 2 * (2 * 8 * h),  # LoRAConfig: r=8 on query and value
        "mam": layers * 2 * 30 * h + layers * _bottleneck(h // 2, h),  # prefix 30 + ParBnConfig
        # UniPELT: gated prefix 10 + gated SeqBn (16) + gated LoRA r=8 on q and v.
        "unipelt": layers * (2 * 10 * h + _gate(h))
        + layers * (_bottleneck(h // 16, h) + _gate(h))
        + layers * 2 * (2 * 8 * h + _gate(h)),
    }[name]


@pytest.fixture(params=["bert", "roberta"])
def model(request: pytest.FixtureRequest, tiny_models: dict[str, str]) -> str:
    return tiny_models[request.param]


def test_every_preset_is_listed() -> None:
    assert set(PRESET_NAMES) == set(get_preset(n).name for n in PRESET_NAMES)
    for name in PRESET_NAMES:
        expected(name, base=1)  # each has its count


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_preset_builds_trains_and_counts(model: str, batch: dict[str, Any], name: str) -> None:
    built = build_peft_model(model, name, num_labels=2, seed=0)
    net = built.model
    net.train()
    net(**batch).loss.backward()
    head = [p for n, p in net.named_parameters() if n.startswith(("classifier.", "bert.pooler."))]
    assert len(head) == 4 and all(p.requires_grad and p.grad is not None for p in head)
    base_trained = [p for p in net.base_model.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in base_trained)
    base = ParamCost.from_model(model).base_params
    assert built.base_params == base
    assert built.trainable_params == expected(name, base)
    if name == "full":
        assert built.param_fraction == 1.0
        assert built.trained_params == sum(p.numel() for p in net.parameters())  # all of it
    else:
        assert built.setup["active"] == [name]
        assert 0 < built.param_fraction < 0.1
        # Only the preset's modules train in the base model.
        original = {
            n
            for n, _ in net.base_model.named_parameters()
            if f".{name}." not in n and not n.startswith("pooler.")
        }
        assert all(
            not p.requires_grad for n, p in net.base_model.named_parameters() if n in original
        )


def test_the_real_model_counts_as_its_presets_say() -> None:
    """Once on the real offline model (width 384): the counts the README's figures use."""
    from autopeft_ray.models import DEFAULT_MODEL

    built = build_peft_model(DEFAULT_MODEL, "lora", num_labels=2)
    assert built.base_params == 22_713_216
    assert built.trainable_params == expected("lora", 22_713_216, h=384) == 73_728


def test_unknown_preset_names_the_valid_ones() -> None:
    with pytest.raises(ConfigurationError) as caught:
        get_preset("adapter")
    message = str(caught.value)
    assert "`configuration`" in message and "'adapter'" in message
    assert all(repr(name) in message for name in PRESET_NAMES)


#: Presets that are points of the widest space (``full-lora``) on the offline model
#: (width 384) and on BERT-base (768), and those that are not. (On a width-32 model,
#: ``serial``'s 32 / 16 = 2 units would be a point: whether a preset is one depends on
#: the width.)
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
def test_a_preset_that_is_a_point_builds_that_points_model(model: str, name: str) -> None:
    point = SearchSpace(L, H, WIDEST_VARIANT).validate(POINTS[name])
    preset = build_peft_model(model, name, num_labels=2, seed=3)
    built = build_peft_model(model, point, num_labels=2, seed=3)
    assert preset.setup["adapters"][name] == built.setup["adapters"][name]
    base = ParamCost.from_model(model).base_params
    assert preset.trainable_params == built.trainable_params == expected(name, base)
    assert preset.param_fraction == ParamCost.from_model(model)(point)
    # The same modules under the same names, with the same initial weights.
    trained = {n: p for n, p in preset.model.named_parameters() if p.requires_grad}
    same = {n: p for n, p in built.model.named_parameters() if p.requires_grad}
    assert sorted(trained) == sorted(same)
    assert all(torch.equal(trained[n], same[n]) for n in trained)


@pytest.mark.parametrize("width", [384, 768])
@pytest.mark.parametrize("name", sorted(set(NOT_POINTS) - {"full", "unipelt"}))
def test_a_preset_that_is_not_a_point_has_a_size_outside_the_space(name: str, width: int) -> None:
    space = SearchSpace(L, width, WIDEST_VARIANT)
    config = get_preset(name).adapter_config().to_dict()
    sizes = {c["prefix_length"] for c in _configs(config) if "prefix_length" in c} | {
        width // c["reduction_factor"] for c in _configs(config) if "reduction_factor" in c
    }
    assert sizes and not sizes <= set(space.sizes), NOT_POINTS[name]


def _configs(config: dict[str, Any]) -> list[dict[str, Any]]:
    return config.get("configs") or [config]
