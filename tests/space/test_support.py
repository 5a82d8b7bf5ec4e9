"""What a model family refuses, as data: the space fixes it at 0, the builder's check raises.

Spaces are built from real-shape configs (no weights): GPT-2 small, a Llama-2-7B
shape, Mistral-7B (grouped-query attention) and BERT-base.
"""

from __future__ import annotations

import random

import pytest
from transformers import BertConfig, GPT2Config, LlamaConfig, MistralConfig

from autopeft_ray.exceptions import ConfigurationError, SearchSpaceError, UnsupportedError
from autopeft_ray.space import SIZE_KEYS, PeftConfiguration, SearchSpace
from autopeft_ray.space.support import (
    DECODER_FAMILIES,
    REFUSALS,
    adapter_config,
    check_causal_lm,
    check_supported,
    refused_modules,
)

GPT2 = GPT2Config()  # 12 layers, width 768
LLAMA = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32)
MISTRAL = MistralConfig()  # 32 layers, width 4096, 8 key/value heads
BERT = BertConfig()


@pytest.mark.parametrize(
    ("config", "shape"),
    [(GPT2, (12, 768)), (LLAMA, (32, 4096)), (MISTRAL, (32, 4096)), (BERT, (12, 768))],
    ids=["gpt2", "llama", "mistral", "bert"],
)
def test_space_reads_layers_and_width_from_any_family(config, shape) -> None:
    space = SearchSpace.from_model_config(config, "full-lora")
    assert (space.num_layers, space.hidden_size) == shape
    # The same from the config as a dict (config.json).
    assert SearchSpace.from_model_config(config.to_dict(), "full-lora") == space


def test_gpt2_refuses_lora_beside_other_modules_only() -> None:
    assert set(refused_modules("gpt2", ("sa", "pa", "pt", "lora"))) == {"lora"}
    assert refused_modules("gpt2", ("lora",)) == {}  # LoRA alone builds
    assert refused_modules("gpt2", ("sa", "pa", "pt")) == {}
    for family in ("llama", "mistral", "bert"):
        assert refused_modules(family, ("sa", "pa", "pt", "lora")) == {}
    assert {(r.family, r.module) for r in REFUSALS} == {("gpt2", "lora")}


def test_gpt2_full_lora_space_fixes_lora_at_zero_so_searchers_never_propose_it() -> None:
    space = SearchSpace.from_model_config(GPT2, "full-lora")
    assert space.modules == ("sa", "pa", "pt")
    assert space.fixed()["lora_rank"] == 0
    assert "lora_rank" not in [d.name for d in space.dimensions]
    rng = random.Random(0)
    assert all(space.sample(rng).lora_rank == 0 for _ in range(200))
    assert all(n.lora_rank == 0 for n in space.neighbours(space.sample(rng)))
    # The same variant on Llama searches LoRA.
    assert "lora_rank" in [
        d.name for d in SearchSpace.from_model_config(LLAMA, "full-lora").dimensions
    ]
    # LoRA alone stays searchable on GPT-2.
    alone = SearchSpace.from_model_config(GPT2, "lora-layer")
    assert alone.refused == () and "lora_rank" in [d.name for d in alone.dimensions]


def test_refused_value_names_family_module_and_fix() -> None:
    space = SearchSpace.from_model_config(GPT2, "full-lora")
    with pytest.raises(SearchSpaceError) as caught:
        space.configuration(sa_size=8, lora_rank=4)
    message = str(caught.value)
    for words in ("`lora_rank`", "got 4", "'gpt2'", "LoRA", "c_attn", "--space lora"):
        assert words in message


def test_refusal_survives_narrowing_and_the_round_trip() -> None:
    space = SearchSpace.from_model_config(GPT2, "full-lora")
    narrowed = space.narrow({"sa_size": [0, 8]})
    assert narrowed.refused == space.refused and narrowed.unnarrowed() == space
    assert SearchSpace.from_dict(space.to_dict()) == space
    assert SearchSpace.from_dict(narrowed.to_dict()) == narrowed
    # Spaces without refusals write what they wrote before (no new key).
    assert "refused" not in SearchSpace.from_model_config(BERT, "full-lora").to_dict()


def test_largest_member_of_a_refusing_space_is_buildable() -> None:
    """The hypervolume reference point is the largest member: it must be buildable."""
    space = SearchSpace.from_model_config(GPT2, "full-lora")
    largest = space.configuration(**{SIZE_KEYS[m]: max(space.choices_of(m)) for m in space.modules})
    assert largest.lora_rank == 0 and largest.sa_size == 512
    check_supported(largest, "gpt2")


def test_a_space_with_every_module_refused_is_an_error() -> None:
    with pytest.raises(SearchSpaceError, match="a space with a module this model family can build"):
        SearchSpace(2, 8, "lora", refused=(("lora", "adapters cannot."),))


@pytest.mark.parametrize(
    "config",
    [
        PeftConfiguration(8, 0, 0, (True, True), lora_rank=4),
        PeftConfiguration(0, 2, 0, (True, False), lora_rank=1),
        PeftConfiguration(0, 0, 4, (False, True), lora_rank=8),
    ],
    ids=lambda c: c.describe().replace(" ", "_"),
)
def test_check_supported_refuses_lora_with_another_module_on_gpt2(config) -> None:
    with pytest.raises(UnsupportedError) as caught:
        check_supported(config, "gpt2")
    assert "'gpt2'" in str(caught.value) and "LoRA" in str(caught.value)
    for family in ("llama", "mistral", "bert"):
        assert check_supported(config, family) is config


def test_check_supported_allows_lora_alone_and_degenerate_configurations() -> None:
    check_supported(PeftConfiguration(0, 0, 0, (True, True), lora_rank=8), "gpt2")
    check_supported(PeftConfiguration(8, 0, 0, (False, False), lora_rank=8), "gpt2")  # no layer


def test_causal_lm_needs_a_decoder_family() -> None:
    for family in DECODER_FAMILIES:
        check_causal_lm(family)
    with pytest.raises(UnsupportedError, match="'bert' is not one of the supported decoder"):
        check_causal_lm("bert")


def test_adapter_config_is_what_the_builder_adds() -> None:
    sa = adapter_config("sa", 16, hidden_size=64, leave_out=[1])
    assert 64 / sa.reduction_factor == 16 and sa.leave_out == [1] and not sa.is_parallel
    assert adapter_config("pa", 4, hidden_size=64).is_parallel
    lora = adapter_config("lora", 8)
    assert (lora.r, lora.alpha, lora.attn_matrices) == (8, 8, ["q", "v"])
    assert adapter_config("pt", 3).prefix_length == 3
    with pytest.raises(ConfigurationError, match="`hidden_size`"):
        adapter_config("pa", 4)
