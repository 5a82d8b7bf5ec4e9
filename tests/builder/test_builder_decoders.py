"""build_peft_model on tiny GPT-2, Llama and Mistral models built from a config (2 layers,
width 64, random weights): every module and combination, as sequence classifiers and as
causal LMs; the cost equal to the built model; the SA + PA composition; the last-token
head; what GPT-2 refuses; save and load."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from autopeft_ray.builder import (
    LORA,
    PA,
    PT,
    SA,
    build_peft_model,
    load_adapters,
    save_adapters,
    task_head_parameters,
)
from autopeft_ray.exceptions import UnsupportedError
from autopeft_ray.models import CAUSAL_LM, SEQUENCE_CLASSIFICATION
from autopeft_ray.objectives.cost import ParamCost
from autopeft_ray.space import MODULES, PeftConfiguration, SearchSpace
from autopeft_ray.space.support import DECODER_FAMILIES

HIDDEN, NUM_LAYERS = 64, 2
SIZES = {"sa": 8, "pa": 4, "pt": 2, "lora": 2}
#: Every non-empty set of modules, in the layer 1 only (layer 0 off).
COMBOS = [c for n in range(1, 5) for c in itertools.combinations(MODULES, n)]
KINDS = (SEQUENCE_CLASSIFICATION, CAUSAL_LM)


def _config(modules: tuple[str, ...], layers: tuple[bool, ...] = (False, True)) -> Any:
    return PeftConfiguration(
        *(SIZES[m] if m in modules else 0 for m in ("sa", "pa", "pt")),
        layers,
        lora_rank=SIZES["lora"] if "lora" in modules else 0,
    )


def _refused(family: str, modules: tuple[str, ...]) -> bool:
    return family == "gpt2" and "lora" in modules and len(modules) > 1


@pytest.fixture(scope="module")
def costs(tiny_decoders: dict[str, str]) -> dict[str, ParamCost]:
    return {f: ParamCost.from_model(path) for f, path in tiny_decoders.items()}


def _inputs(batch: dict[str, Any], kind: str) -> dict[str, Any]:
    """The builder tests' batch (two sentences, padded) with labels for ``kind``."""
    inputs = dict(batch)
    if kind == CAUSAL_LM:
        inputs["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    return inputs


def _marker(name: str) -> str:
    return {
        SA: ".adapters.sa.",
        PA: ".adapters.pa.",
        PT: "prefix_tunings.pt.",
        LORA: ".loras.lora.",
    }[name]


@pytest.mark.parametrize("modules", COMBOS, ids=lambda c: "+".join(c))
@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_every_combination_builds_trains_and_costs_what_it_holds(
    tiny_decoders, costs, batch, family, modules
) -> None:
    config = _config(modules)
    if _refused(family, modules):
        with pytest.raises(UnsupportedError) as caught:
            build_peft_model(tiny_decoders[family], config, num_labels=2)
        assert "'gpt2'" in str(caught.value) and "LoRA" in str(caught.value)
        return
    built = build_peft_model(tiny_decoders[family], config, num_labels=2, seed=0)
    net = built.model
    net.train()
    out = net(**_inputs(batch, SEQUENCE_CLASSIFICATION))
    assert out.logits.shape == (2, 2)
    out.loss.backward()
    assert built.trainable_params == costs[family].param_count(config)
    assert built.base_params == costs[family].base_params
    assert built.head_params == HIDDEN * 2  # the last-token score layer, no bias
    for name, param in net.named_parameters():
        module = any(_marker(m) in name for m in modules)
        trains = module or name.startswith("score.")
        assert param.requires_grad == trains, name
        assert (param.grad is not None) == trains, name


@pytest.mark.parametrize("modules", [*((m,) for m in MODULES), ("sa", "pa", "pt")], ids="+".join)
@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_causal_lm_builds_each_module_with_a_frozen_lm_head(
    tiny_decoders, costs, batch, family, modules
) -> None:
    config = _config(modules, (True, True))
    built = build_peft_model(tiny_decoders[family], config, seed=0, kind=CAUSAL_LM)
    net = built.model
    net.train()
    out = net(**_inputs(batch, CAUSAL_LM))
    assert out.logits.shape[:2] == batch["input_ids"].shape
    out.loss.backward()
    assert built.kind == CAUSAL_LM and built.head_params == 0
    assert task_head_parameters(net) == []
    assert built.trainable_params == costs[family].param_count(config)
    trained = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trained and all(any(_marker(m) in n for m in modules) for n in trained)
    assert not net.get_output_embeddings().weight.requires_grad


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_random_configurations_cost_what_the_built_model_holds(
    tiny_decoders, costs, family, kind
) -> None:
    spaces = [SearchSpace.from_model_config(tiny_decoders[family], "full-lora")]
    if family == "gpt2":  # LoRA only alone there: its own space
        spaces.append(SearchSpace.from_model_config(tiny_decoders[family], "lora-layer"))
    for space in spaces:
        for seed in range(3):
            config = space.sample(random.Random(seed))
            built = build_peft_model(tiny_decoders[family], config, num_labels=3, kind=kind)
            assert built.trainable_params == costs[family].param_count(config), config
            assert built.param_fraction == costs[family](config)


def test_gpt2_refuses_lora_beside_another_module_before_loading_weights(
    tiny_decoders, tmp_path
) -> None:
    """The refusal comes from the config alone: the weights are not even read."""
    folder = tmp_path / "gpt2-config-only"
    folder.mkdir()
    (folder / "config.json").write_text((Path(tiny_decoders["gpt2"]) / "config.json").read_text())
    with pytest.raises(UnsupportedError, match="model family 'gpt2'"):
        build_peft_model(str(folder), _config(("pt", "lora")), kind=CAUSAL_LM)


def test_causal_lm_on_an_encoder_is_refused(tiny_models) -> None:
    with pytest.raises(UnsupportedError, match="'bert' is not one of the supported decoder"):
        build_peft_model(tiny_models["bert"], _config(("sa",), (True,) * 6), kind=CAUSAL_LM)


def test_head_only_causal_lm_trains_nothing(tiny_decoders) -> None:
    built = build_peft_model(
        tiny_decoders["llama"], PeftConfiguration(0, 0, 0, (False, False)), kind=CAUSAL_LM
    )
    assert (built.trainable_params, built.trained_params, built.head_params) == (0, 0, 0)


# -- the SA + PA composition on decoders (pre-LayerNorm blocks) ---------------------


def _randomise(model: Any, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".adapters." in name or name.startswith("score"):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)


def _zero_up(model: Any, adapter: str) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if f".adapters.{adapter}.adapter_up." in name:
                param.zero_()


def _logits(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def _copy_into(reference: Any, source: Any) -> None:
    src = source.state_dict()
    reference.load_state_dict({k: src[k] for k in reference.state_dict()})


@pytest.mark.parametrize(("zeroed", "kept"), [(PA, SA), (SA, PA)])
@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_sa_pa_composition_reduces_to_each_adapter_alone(
    tiny_decoders, batch, family, zeroed, kept
) -> None:
    both = build_peft_model(tiny_decoders[family], _config(("sa", "pa")), num_labels=2, seed=0)
    _randomise(both.model, seed=1)
    _zero_up(both.model, zeroed)
    alone = build_peft_model(tiny_decoders[family], _config((kept,)), num_labels=2, seed=5)
    _copy_into(alone.model, both.model)
    assert torch.allclose(_logits(both.model, batch), _logits(alone.model, batch), atol=1e-5)
    # And the composition is not one adapter alone when both are live.
    live = build_peft_model(tiny_decoders[family], _config(("sa", "pa")), num_labels=2, seed=0)
    _randomise(live.model, seed=1)
    assert not torch.allclose(_logits(live.model, batch), _logits(alone.model, batch), atol=1e-4)


# -- the last-token head, the pad token ----------------------------------------------


@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_last_token_head_ignores_padding(tiny_decoders, batch, family) -> None:
    """Each sentence scored alone and right-padded in a batch gets the same logits."""
    built = build_peft_model(tiny_decoders[family], _config(("sa", "pt")), num_labels=2, seed=0)
    _randomise(built.model, seed=2)
    together = _logits(built.model, batch)
    for row in range(2):
        length = int(batch["attention_mask"][row].sum())
        alone = {k: v[row : row + 1, :length] for k, v in batch.items() if k != "labels"}
        assert torch.allclose(_logits(built.model, alone)[0], together[row], atol=1e-5)
    assert int(batch["attention_mask"].sum(1).min()) < batch["input_ids"].shape[1]  # padded


@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_prefixes_attend_causally_whatever_the_padding(tiny_decoders, batch, family) -> None:
    """Under SDPA, adapters' prefixes were hidden (boolean masks) or shifted (no mask): the
    builder runs a decoder with a prefix in eager attention, where neither happens."""
    built = build_peft_model(tiny_decoders[family], _config(("pt",)), seed=0, kind=CAUSAL_LM)
    assert built.model.config._attn_implementation == "eager"
    together = _logits(built.model, batch)
    for row in range(2):
        length = int(batch["attention_mask"][row].sum())
        alone = {k: v[row : row + 1, :length] for k, v in batch.items() if k != "labels"}
        assert torch.allclose(_logits(built.model, alone)[0], together[row, :length], atol=1e-5)
    changed = {k: v[:1].clone() for k, v in batch.items() if k != "labels"}
    changed["input_ids"][0, -1] = 2000  # a later token changes nothing before it
    assert torch.allclose(_logits(built.model, changed)[0, :-1], together[0, :-1], atol=1e-5)
    # Without a prefix the model keeps its own attention implementation.
    plain = build_peft_model(tiny_decoders[family], _config(("sa",)), kind=CAUSAL_LM)
    assert plain.model.config._attn_implementation != "eager"


def test_a_decoder_without_pad_id_takes_its_tokenizers_pad(tiny_decoders, tmp_path) -> None:
    """No pad token anywhere: the end-of-sequence token pads, in the tokenizer and the model."""
    import json

    from transformers import AutoTokenizer

    from autopeft_ray.models import load_tokenizer

    folder = tmp_path / "gpt2-no-pad"
    source = Path(tiny_decoders["gpt2"])
    for file in source.iterdir():
        (folder / file.name).parent.mkdir(parents=True, exist_ok=True)
        (folder / file.name).write_bytes(file.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["pad_token_id"] = None
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token, tokenizer.eos_token = None, "[SEP]"
    tokenizer.save_pretrained(folder)
    assert AutoTokenizer.from_pretrained(folder).pad_token is None
    assert load_tokenizer(str(folder)).pad_token_id == 102
    built = build_peft_model(str(folder), _config(("sa",)), num_labels=2)
    assert built.model.config.pad_token_id == 102


# -- save and load ------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_save_and_load_restore_the_same_function(
    tiny_decoders, batch, tmp_path, family, kind
) -> None:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    modules = ("pa", "sa", "pt") if family == "gpt2" else ("pa", "sa", "pt", "lora")
    built = build_peft_model(tiny_decoders[family], _config(modules), num_labels=2, kind=kind)
    _randomise(built.model, seed=3)
    expected = _logits(built.model, batch)
    save_adapters(built, tmp_path / "saved")

    auto = AutoModelForCausalLM if kind == CAUSAL_LM else AutoModelForSequenceClassification
    kwargs = {} if kind == CAUSAL_LM else {"num_labels": 2}
    torch.manual_seed(99)  # a different head initialisation: the saved one must win
    # The pretrained LM head is the checkpoint's own: only the score head is saved.
    fresh = auto.from_pretrained(tiny_decoders[family], **kwargs)
    load_adapters(fresh, tmp_path / "saved")
    assert torch.allclose(_logits(fresh, batch), expected, atol=1e-5)
