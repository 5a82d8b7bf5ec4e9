"""The paper's baselines as presets, built on the real offline model."""

from __future__ import annotations

from typing import Any

import pytest

from autopeft_ray.builder import build_peft_model
from autopeft_ray.builder.presets import PRESET_NAMES, get_preset
from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.models import DEFAULT_MODEL

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
