"""build_peft_model on tiny BERT and RoBERTa models built from a config: every module
combination, counts equal to the cost, bad input. The real offline model is loaded once,
by its local path."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
import torch

from autopeft_ray.builder import LORA, PA, PT, SA, BuiltModel, adapter_setup_dict, build_peft_model
from autopeft_ray.exceptions import ConfigurationError, ModelLoadError, SearchSpaceError
from autopeft_ray.models import DEFAULT_MODEL
from autopeft_ray.objectives.cost import ParamCost, analytic_param_count
from autopeft_ray.space import PeftConfiguration, SearchSpace

HIDDEN, NUM_LAYERS = 32, 6
SOME = (True, False, True, False, False, True)
ALL = (True,) * NUM_LAYERS
NONE = (False,) * NUM_LAYERS
#: The task head that trains in every configuration: BERT's pooler and classifier;
#: RoBERTa's classifier (dense and output layers).
HEAD_PREFIXES = ("classifier.", "bert.pooler.")


@pytest.fixture(params=["bert", "roberta"])
def model(request: pytest.FixtureRequest, tiny_models: dict[str, str]) -> str:
    """A tiny checkpoint of each family (6 layers, width 32)."""
    return tiny_models[request.param]


COMBINATIONS = {
    "sa": PeftConfiguration(8, 0, 0, SOME),
    "pa": PeftConfiguration(0, 4, 0, SOME),
    "pt": PeftConfiguration(0, 0, 2, SOME),
    "sa+pa": PeftConfiguration(8, 4, 0, SOME),
    "sa+pt": PeftConfiguration(8, 0, 2, SOME),
    "pa+pt": PeftConfiguration(0, 4, 2, SOME),
    "sa+pa+pt": PeftConfiguration(8, 4, 2, SOME),
    "lora": PeftConfiguration(0, 0, 0, SOME, lora_rank=4),
    "sa+lora": PeftConfiguration(8, 0, 0, SOME, lora_rank=2),
    "pa+pt+lora": PeftConfiguration(0, 4, 2, SOME, lora_rank=1),
    "sa+pa+pt+lora": PeftConfiguration(8, 4, 2, SOME, lora_rank=16),
    "no-module": PeftConfiguration(0, 0, 0, ALL),
    "no-layer": PeftConfiguration(8, 4, 2, NONE),
}


def _module_markers(config: PeftConfiguration) -> dict[str, bool]:
    """Which adapter modules should exist, keyed by a substring of their parameter names."""
    on = not config.is_degenerate
    return {
        f".adapters.{SA}.": on and config.sa_size > 0,
        f".adapters.{PA}.": on and config.pa_size > 0,
        f"prefix_tunings.{PT}.": on and config.pt_length > 0,
        f".loras.{LORA}.": on and config.lora_rank > 0,
    }


@pytest.mark.parametrize("name", COMBINATIONS)
def test_every_combination_trains_only_its_modules(
    model: str, batch: dict[str, Any], name: str
) -> None:
    config = COMBINATIONS[name]
    built = build_peft_model(model, config, num_labels=2, seed=0)
    net = built.model
    net.train()
    out = net(**batch)
    assert out.logits.shape == (2, 2)
    out.loss.backward()

    names = [n for n, _ in net.named_parameters()]
    for marker, present in _module_markers(config).items():
        assert any(marker in n for n in names) == present, marker
    for param_name, param in net.named_parameters():
        trains = param_name.startswith(HEAD_PREFIXES) or any(
            marker in param_name for marker in _module_markers(config)
        )
        assert param.requires_grad == trains, param_name
        assert (param.grad is not None) == trains, param_name

    assert built.trainable_params == analytic_param_count(config, HIDDEN)
    assert built.head_params == HIDDEN * HIDDEN + HIDDEN + HIDDEN * 2 + 2  # pooler + classifier
    assert built.trained_params >= built.trainable_params + built.head_params
    assert built.param_fraction == built.trainable_params / built.base_params
    if config.is_degenerate:
        assert built.trainable_params == 0 and built.active_setup is None


@pytest.mark.parametrize(
    "config",
    [
        PeftConfiguration(1, 0, 0, ALL),
        PeftConfiguration(0, 32, 0, (False, True, False, False, False, False)),
        PeftConfiguration(0, 0, 16, ALL),
        PeftConfiguration(16, 2, 1, (True, True, False, False, True, True)),
        PeftConfiguration(32, 32, 32, (False, False, False, False, False, True)),
        PeftConfiguration(0, 0, 0, NONE),
        PeftConfiguration(0, 0, 0, (False, True, True, False, False, False), lora_rank=32),
        # Random members of the space with LoRA (seeded draws from full-lora).
        *(
            SearchSpace(NUM_LAYERS, HIDDEN, "full-lora").sample(random.Random(seed))
            for seed in range(4)
        ),
    ],
    ids=lambda c: c.describe().replace(" ", "_"),
)
def test_trainable_params_match_the_analytic_cost(model: str, config: PeftConfiguration) -> None:
    built = build_peft_model(model, config, num_labels=3)
    assert built.trainable_params == analytic_param_count(config, HIDDEN)
    # Bottlenecks are exactly D wide, and only in the layers whose bit is on.
    for index, layer in built.model.base_model.iter_layers():
        adapters = layer.output.adapters
        for name in (SA, PA):
            size = config.size(name) if config.layers[index] and not config.is_degenerate else 0
            assert (adapters[name].adapter_down[0].out_features if name in adapters else 0) == size
        # LoRA has rank r on the query and value of the same layers, and nowhere else.
        attention = layer.attention.self
        rank = config.lora_rank if config.layers[index] and not config.is_degenerate else 0
        for projection in (attention.query, attention.value):
            loras = projection.loras
            assert (loras[LORA].lora_A.shape[0] if LORA in loras else 0) == rank
        assert LORA not in attention.key.loras
    if config.pt_length and not config.is_degenerate:
        # The deployable prefix is what eject_prefix_tuning keeps.
        ejected = copy.deepcopy(built.model)
        ejected.eject_prefix_tuning(PT)
        group = ejected.base_model.prefix_tuning.prefix_tunings[PT]
        flat = sum(m.control_trans.numel() for m in group.values())
        assert flat == config.pt_length * 2 * HIDDEN * len(config.active_layers)
        assert built.trained_params > built.trainable_params + built.head_params  # the MLP


def test_base_params_match_param_cost(model: str) -> None:
    built = build_peft_model(model, COMBINATIONS["sa"], num_labels=2)
    cost = ParamCost.from_model(model)
    assert cost.base_params == built.base_params
    assert cost(COMBINATIONS["sa"]) == built.param_fraction


def test_seed_makes_initialisation_reproducible_without_touching_global_rng(model: str) -> None:
    config = COMBINATIONS["sa+pa+pt"]
    before = torch.random.get_rng_state()
    first = build_peft_model(model, config, num_labels=2, seed=7).model.state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)
    again = build_peft_model(model, config, num_labels=2, seed=7).model.state_dict()
    other = build_peft_model(model, config, num_labels=2, seed=8).model.state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    moved = [k for k in first if not torch.equal(first[k], other[k])]
    assert any("classifier" in k for k in moved) and any(".adapters.sa." in k for k in moved)


def test_regression_head(model: str, batch: dict[str, Any]) -> None:
    built = build_peft_model(model, COMBINATIONS["pa"], num_labels=1, problem_type="regression")
    out = built.model(**{**batch, "labels": torch.tensor([0.3, 0.9])})
    assert out.logits.shape == (2, 1) and out.loss.ndim == 0
    # BERT: pooler + output layer; RoBERTa: the classifier's dense + output layer.
    assert built.head_params == HIDDEN * HIDDEN + HIDDEN + HIDDEN + 1


def test_setup_dict_holds_exact_sizes() -> None:
    setup = adapter_setup_dict(COMBINATIONS["sa+pa+pt"], hidden_size=HIDDEN)
    assert setup["active"] == [PA, SA, PT]
    assert setup["composition"] == "parallel_then_serial"
    assert HIDDEN / setup["adapters"][SA]["reduction_factor"] == 8
    assert setup["adapters"][PA]["is_parallel"] and setup["adapters"][PT]["prefix_length"] == 2
    assert setup["adapters"][SA]["leave_out"] == [1, 3, 4]
    assert adapter_setup_dict(COMBINATIONS["sa+pt"], hidden_size=HIDDEN)["composition"] == "stack"
    assert adapter_setup_dict(COMBINATIONS["no-layer"])["composition"] == "head_only"
    lora = adapter_setup_dict(COMBINATIONS["sa+pa+pt+lora"], hidden_size=HIDDEN)
    assert lora["active"] == [PA, SA, PT, LORA]
    assert lora["adapters"][LORA]["r"] == lora["adapters"][LORA]["alpha"] == 16
    assert lora["adapters"][LORA]["attn_matrices"] == ["q", "v"]
    assert lora["adapters"][LORA]["leave_out"] == [1, 3, 4]
    with pytest.raises(ConfigurationError, match="`hidden_size`"):
        adapter_setup_dict(COMBINATIONS["sa"])


# -- bad input ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"configuration": "loraa"}, ConfigurationError, ["`configuration`", "'loraa'", "'lora'"]),
        (
            {"configuration": PeftConfiguration(3, 0, 0, ALL)},
            SearchSpaceError,
            ["`sa_size`", "got 3", "powers of two"],
        ),
        (
            {"configuration": PeftConfiguration(0, 64, 0, ALL)},
            SearchSpaceError,
            ["`pa_size`", "got 64"],
        ),
        (
            {"configuration": PeftConfiguration(0, 0, 0, ALL, lora_rank=128)},
            SearchSpaceError,
            ["`lora_rank`", "got 128", "up to 32"],
        ),
        (
            {"configuration": PeftConfiguration(8, 0, 0, (True,) * 5)},
            SearchSpaceError,
            ["`layers`", "6 insertion bits", "got 5"],
        ),
        (
            {"configuration": {"sa_size": 8}},
            ConfigurationError,
            ["`configuration`", "PeftConfiguration or a preset name"],
        ),
        (
            {"model": "/nonexistent/checkpoint"},
            ModelLoadError,
            ["`model`", "'/nonexistent/checkpoint'"],
        ),
        ({"num_labels": 0}, ConfigurationError, ["`num_labels`", "got 0"]),
        ({"problem_type": "regresion"}, ConfigurationError, ["`problem_type`", "'regression'"]),
        ({"seed": "1"}, ConfigurationError, ["`seed`", "got '1'"]),
    ],
    ids=[
        "preset",
        "sa-size",
        "pa-size",
        "lora-rank",
        "layer-bits",
        "type",
        "model",
        "labels",
        "problem",
        "seed",
    ],
)
def test_bad_input_names_field_and_value(
    tiny_models: dict[str, str], kwargs: dict[str, Any], error: type[Exception], words: list[str]
) -> None:
    args: dict[str, Any] = {
        "model": tiny_models["bert"],
        "configuration": COMBINATIONS["sa"],
        "num_labels": 2,
    }
    args.update(kwargs)
    with pytest.raises(error) as caught:
        build_peft_model(args.pop("model"), args.pop("configuration"), **args)
    for word in words:
        assert word in str(caught.value)


def test_built_model_is_a_dataclass_with_counts(model: str) -> None:
    built = build_peft_model(model, COMBINATIONS["no-module"], num_labels=2)
    assert isinstance(built, BuiltModel)
    assert (built.trainable_params, built.trained_params) == (0, built.head_params)
    assert built.param_fraction == 0.0


# -- other checkpoints ------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A randomly initialised 2-layer RoBERTa saved as a local checkpoint folder."""
    from transformers import RobertaConfig, RobertaModel

    config = RobertaConfig(
        vocab_size=100,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=40,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-roberta")
    RobertaModel(config).save_pretrained(folder)
    return str(folder)


def test_local_checkpoint_path_of_another_architecture(tiny_roberta: str) -> None:
    config = PeftConfiguration(16, 4, 2, (False, True))
    built = build_peft_model(tiny_roberta, config, num_labels=3, seed=0)
    assert built.trainable_params == analytic_param_count(config, 64)
    model = built.model
    model.train()
    ids = torch.randint(3, 100, (2, 7))
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 2]))
    out.loss.backward()
    assert all((p.grad is not None) == p.requires_grad for p in model.base_model.parameters())
    # RoBERTa's classifier has no pooler: its dense and output layers are the task head.
    head = {n: p for n, p in model.named_parameters() if n.startswith("classifier.")}
    assert sorted(head) == [
        "classifier.dense.bias",
        "classifier.dense.weight",
        "classifier.out_proj.bias",
        "classifier.out_proj.weight",
    ]
    assert all(p.requires_grad and p.grad is not None for p in head.values())
    assert built.head_params == 64 * 64 + 64 + 64 * 3 + 3
    with pytest.raises(SearchSpaceError, match="`sa_size`"):
        build_peft_model(tiny_roberta, PeftConfiguration(128, 0, 0, (True, True)), num_labels=2)


def test_param_cost_base_matches_roberta_classifier(tiny_roberta: str) -> None:
    built = build_peft_model(tiny_roberta, PeftConfiguration(0, 0, 0, (True, True)), num_labels=2)
    assert ParamCost.from_model(tiny_roberta).base_params == built.base_params


def test_local_path_of_the_default_model() -> None:
    """The real offline model (6 layers, width 384), once: by its folder, with exact counts."""
    from autopeft_ray.models import resolve_model

    config = PeftConfiguration(8, 4, 2, SOME, lora_rank=4)
    built = build_peft_model(resolve_model(DEFAULT_MODEL), config, num_labels=2)
    cost = ParamCost.from_model(DEFAULT_MODEL)
    assert built.base_params == cost.base_params == 22_713_216
    assert built.trainable_params == analytic_param_count(config, 384)
    assert built.param_fraction == cost(config)
