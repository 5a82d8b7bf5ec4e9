"""The cost measured with adapters on meta-device models: exact for BERT (equal to the
formulas) and for decoder shapes (GPT-2, Llama's MLP, Mistral's grouped-query attention,
tied and untied embeddings). No weights are allocated; nothing is downloaded."""

from __future__ import annotations

import random

import pytest
from transformers import GPT2Config, LlamaConfig, MistralConfig

from autopeft_ray.models import DEFAULT_MODEL
from autopeft_ray.objectives.cost import ParamCost, analytic_param_count, measure_module_costs
from autopeft_ray.space import PeftConfiguration, SearchSpace

LLAMA_2_7B = LlamaConfig(
    vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32
)
#: TinyLlama-1.1B's shape: 22 layers, width 2048, 32 query heads and 4 key/value heads.
TINYLLAMA = LlamaConfig(
    vocab_size=32000,
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=22,
    num_attention_heads=32,
    num_key_value_heads=4,
)
MISTRAL_7B = MistralConfig()  # width 4096, 32 layers, 8 key/value heads of 128


def _bert_formulas(h: int) -> tuple[tuple[str, int, int], ...]:
    return (("sa", 2 * h + 1, h), ("pa", 2 * h + 1, h), ("pt", 2 * h, 0), ("lora", 4 * h, 0))


def test_bert_measured_costs_are_the_formulas_and_fractions_unchanged() -> None:
    cost = ParamCost.from_model(DEFAULT_MODEL)
    assert cost.base_params == 22_713_216
    assert cost.module_costs == _bert_formulas(384)
    analytic = ParamCost(384, 22_713_216)
    space = SearchSpace(6, 384, "full-lora")
    for seed in range(50):
        config = space.sample(random.Random(seed))
        assert cost.param_count(config) == analytic_param_count(config, 384)
        assert cost(config) == analytic(config)  # bit for bit: one integer over another


@pytest.mark.parametrize(
    ("config", "base", "module_costs"),
    [
        # GPT-2 small: 124,439,808 with its LM head tied to the input embedding.
        (GPT2Config(), 124_439_808, _bert_formulas(768)),
        # Llama-2-7B: 6,738,415,616 in all, less the untied LM head (32000 x 4096); its
        # three-matrix MLP is in the base count, the modules do not depend on it.
        (LLAMA_2_7B, 6_738_415_616 - 32000 * 4096, _bert_formulas(4096)),
        # Mistral-7B: 7,241,732,096 in all, less its LM head. Grouped-query attention: a
        # prefix holds 2 x 1024 per position (8 key/value heads of 128), LoRA on q is
        # r(h + h) and on v r(h + 1024).
        (
            MISTRAL_7B,
            7_241_732_096 - 32000 * 4096,
            (
                ("sa", 2 * 4096 + 1, 4096),
                ("pa", 2 * 4096 + 1, 4096),
                ("pt", 2 * 1024, 0),
                ("lora", 3 * 4096 + 1024, 0),
            ),
        ),
        # TinyLlama-1.1B: 1,100,048,384 in all, less its LM head; 4 key/value heads of 64.
        (
            TINYLLAMA,
            1_100_048_384 - 32000 * 2048,
            (
                ("sa", 2 * 2048 + 1, 2048),
                ("pa", 2 * 2048 + 1, 2048),
                ("pt", 2 * 256, 0),
                ("lora", 3 * 2048 + 256, 0),
            ),
        ),
    ],
    ids=["gpt2", "llama-2-7b", "mistral-7b", "tinyllama-1.1b"],
)
def test_decoder_shapes_are_measured_exactly(config, base, module_costs) -> None:
    assert measure_module_costs(config) == (base, module_costs)


def test_tied_embeddings_count_once() -> None:
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        gpt2 = AutoModelForCausalLM.from_config(GPT2Config())
        llama = AutoModelForCausalLM.from_config(LLAMA_2_7B)
    # parameters() yields a tied weight once: GPT-2's LM is its base model.
    assert sum(p.numel() for p in gpt2.parameters()) == measure_module_costs(GPT2Config())[0]
    untied = sum(p.numel() for p in llama.parameters()) - measure_module_costs(LLAMA_2_7B)[0]
    assert untied == 32000 * 4096  # Llama's LM head is its own: left out of the base


def test_param_count_is_linear_in_each_size_and_layer_count() -> None:
    base, costs = measure_module_costs(MISTRAL_7B)
    cost = ParamCost(4096, base, costs)
    layers = (True,) * 5 + (False,) * 27
    config = PeftConfiguration(16, 4, 8, layers, lora_rank=2)
    per_layer = (
        (2 * 4096 + 1) * 16
        + 4096
        + (2 * 4096 + 1) * 4
        + 4096
        + 2 * 1024 * 8
        + (3 * 4096 + 1024) * 2
    )
    assert cost.param_count(config) == 5 * per_layer
    assert cost(config) == 5 * per_layer / base
    assert cost.param_count(PeftConfiguration(16, 4, 8, (False,) * 32)) == 0


def test_module_costs_are_validated() -> None:
    from autopeft_ray.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="`module_costs`"):
        ParamCost(8, 100, (("sa", 17, 8),))
    with pytest.raises(ConfigurationError, match="`module_costs`"):
        ParamCost(8, 100, (("sa", -1, 8), ("pa", 17, 8), ("pt", 16, 0), ("lora", 32, 0)))
