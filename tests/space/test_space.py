"""The AutoPEFT search space: cardinalities from the paper, encodings, neighbours."""

from __future__ import annotations

import json
import random

import pytest

from autopeft_ray.exceptions import SearchSpaceError
from autopeft_ray.space import SIZE_KEYS, VARIANTS, PeftConfiguration, SearchSpace, size_choices

BERT_BASE = {"model_type": "bert", "num_hidden_layers": 12, "hidden_size": 768}
ROBERTA_LARGE = {"model_type": "roberta", "num_hidden_layers": 24, "hidden_size": 1024}


def test_cardinality_matches_paper_for_bert_base():
    assert SearchSpace.from_model_config(BERT_BASE).cardinality == 5_451_776


def test_cardinality_matches_paper_for_roberta_large():
    card = SearchSpace.from_model_config(ROBERTA_LARGE).cardinality
    assert card == 12**3 * 2**24
    assert 2.8e10 < card < 3.0e10


def test_space_from_transformers_config_object():
    from transformers import BertConfig

    space = SearchSpace.from_model_config(BertConfig(num_hidden_layers=12, hidden_size=768))
    assert (space.num_layers, space.hidden_size) == (12, 768)


def test_sizes_are_binary_log_scale():
    assert size_choices(768) == (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
    assert size_choices(1024)[-1] == 1024


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("sa", 11),
        ("sa-layer", 11 * 2**12),
        ("sa-pa-layer", 11**2 * 2**12),
        ("full", 11**3 * 2**12),
        ("lora", 8),
        ("lora-layer", 8 * 2**12),
        ("full-lora", 11**3 * 8 * 2**12),
    ],
)
def test_ablated_spaces_by_name(variant, expected):
    assert SearchSpace(12, 768, variant).cardinality == expected


def test_lora_ranks_stop_at_64_or_the_hidden_size():
    assert SearchSpace(12, 768, "full-lora").values("lora_rank") == (0, 1, 2, 4, 8, 16, 32, 64)
    assert SearchSpace(3, 16, "lora").values("lora_rank") == (0, 1, 2, 4, 8, 16)
    assert SearchSpace(12, 768, "full-lora").values("sa_size")[-1] == 512


def test_paper_spaces_fix_lora_at_zero_and_old_configurations_read_as_without_lora():
    space = SearchSpace(6, 384)
    assert space.fixed()["lora_rank"] == 0
    assert "lora_rank" not in [d.name for d in space.dimensions]
    old = {"sa_size": 8, "pa_size": 0, "pt_length": 2, **{f"layer_{i}": 1 for i in range(6)}}
    config = space.from_trial_config(old)
    assert config.lora_rank == 0 and PeftConfiguration.from_dict(old) == config
    assert config.to_dict() == {**old, "lora_rank": 0}
    assert config.describe() == "SA=8 PA=0 PT=2 LoRA=0 layers=111111"


def test_unknown_variant_names_the_choices():
    with pytest.raises(SearchSpaceError, match=r"`variant` should be one of .*'full'.*got 'sa-pt'"):
        SearchSpace(12, 768, "sa-pt")


def _random_configs(space: SearchSpace, n: int, seed: int = 0) -> list[PeftConfiguration]:
    rng = random.Random(seed)
    return [space.sample(rng) for _ in range(n)]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_encode_decode_round_trip(variant):
    space = SearchSpace(6, 384, variant)
    for config in _random_configs(space, 50):
        vector = space.encode(config)
        assert len(vector) == len(space.dimensions)
        assert all(0.0 <= x <= 1.0 for x in vector)
        assert space.decode(vector) == config


def test_dict_and_json_round_trip(tmp_path):
    space = SearchSpace(6, 384)
    for config in _random_configs(space, 20):
        assert PeftConfiguration.from_dict(config.to_dict()) == config
        assert PeftConfiguration.from_json(config.to_json()) == config
    path = tmp_path / "config.json"
    config.to_json(path)
    assert PeftConfiguration.from_json(path) == config
    assert json.loads(path.read_text())["layer_5"] in (0, 1)


def test_ray_param_space_samples_into_the_space():
    from ray.tune.search.sample import Domain

    space = SearchSpace(6, 384, "sa-layer")
    param_space = space.to_param_space()
    assert param_space["pa_size"] == 0 and param_space["pt_length"] == 0
    assert isinstance(param_space["sa_size"], Domain)
    sampled = {k: v.sample() if isinstance(v, Domain) else v for k, v in param_space.items()}
    space.validate(space.from_trial_config(sampled))


def test_ax_parameters_configure_a_real_experiment():
    from ax.api.client import Client

    space = SearchSpace(6, 384)
    client = Client()
    client.configure_experiment(parameters=space.to_ax_parameters(), name="space_test")
    names = set(client._experiment.search_space.parameters)
    assert names == {d.name for d in space.dimensions}


def test_neighbours_differ_in_exactly_one_step():
    space = SearchSpace(6, 384)
    config = space.configuration(sa_size=8, pa_size=0, pt_length=256, active_layers=[0, 3])
    neighbours = space.neighbours(config)
    # sa: 2 moves, pa: 1 (already lowest), pt: 1 (already highest), 6 layer flips
    assert len(neighbours) == 2 + 1 + 1 + 6
    base = space.encode(config)
    for other in neighbours:
        diffs = [abs(a - b) for a, b in zip(space.encode(other), base, strict=True)]
        changed = [d for d in diffs if d > 0]
        assert len(changed) == 1
    assert len(set(neighbours)) == len(neighbours)


def test_degenerate_configurations_share_one_canonical_form():
    space = SearchSpace(6, 384)
    no_layers = space.configuration(sa_size=8, pa_size=4, pt_length=2, layers=[0] * 6)
    no_modules = space.configuration(sa_size=0, pa_size=0, pt_length=0)
    assert no_layers.is_degenerate and no_modules.is_degenerate
    assert no_layers.model_key() == no_modules.model_key()
    live = space.configuration(sa_size=8, active_layers=[1])
    assert not live.is_degenerate and live.model_key() == live


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"sa_size": 3}, r"`sa_size` should be one of 0, 1, 2, 4.*got 3"),
        ({"pa_size": 1024}, r"`pa_size` should be one of .*got 1024"),
        ({"active_layers": [6]}, r"`active_layers` should be a layer index in 0..5, got 6"),
        ({"layers": [1, 0]}, r"`layers` should be 6 insertion bits"),
        ({"lora_size": 4}, r"`configuration field` should be one of .*got 'lora_size'"),
        ({"lora_rank": 4}, r"`lora_rank` should be one of 0, got 4.*variant='full-lora'"),
    ],
)
def test_bad_configurations_name_field_and_value(kwargs, pattern):
    with pytest.raises(SearchSpaceError, match=pattern):
        SearchSpace(6, 384).configuration(**kwargs)


def test_ablated_space_rejects_fixed_fields():
    with pytest.raises(
        SearchSpaceError, match=r"`pa_size` should be one of 0, got 4.*variant='full'"
    ):
        SearchSpace(6, 384, "sa-layer").validate(PeftConfiguration(8, 4, 0, (True,) * 6))


def test_from_trial_config_ignores_fixed_settings():
    space = SearchSpace(6, 384)
    config = space.configuration(sa_size=16, active_layers=[2, 5])
    trial = {**config.to_dict(), "trial_settings": {"task": "rte"}}
    assert space.from_trial_config(trial) == config


def test_negative_and_bool_sizes_are_rejected():
    with pytest.raises(SearchSpaceError, match="`sa_size` should be a non-negative integer"):
        PeftConfiguration(-1, 0, 0, (True,))
    with pytest.raises(SearchSpaceError, match="`pt_length` should be an integer"):
        PeftConfiguration.from_dict({"sa_size": 0, "pa_size": 0, "pt_length": True, "layer_0": 1})


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_space_canonical_is_a_member_of_every_variant(variant):
    space = SearchSpace(4, 64, variant)
    degenerate = space.configuration()  # every size 0
    member = space.representative(degenerate)
    assert space.validate(member) is member
    assert member.is_degenerate and member.model_key() == degenerate.model_key()
    assert space.decode(space.encode(member)).model_key() == member.model_key()
    live = space.configuration(**{SIZE_KEYS[space.modules[0]]: 8})
    assert space.representative(live) == live


# -- narrowing (what a Tune param_space asks for) ------------------------------------------


def _brute_force_distinct(space: SearchSpace) -> int:
    import itertools

    dims = space.dimensions
    seen = set()
    for values in itertools.product(*(d.choices for d in dims)):
        flat = dict(space.fixed(), **{d.name: v for d, v in zip(dims, values, strict=True)})
        seen.add(PeftConfiguration.from_dict(flat).model_key())
    return len(seen)


@pytest.mark.parametrize(
    ("variant", "narrowing"),
    [
        ("full", {}),
        ("full", {"sa_size": [0, 8], "layer_1": [1]}),
        ("full", {"sa_size": [4, 8], "pa_size": [2], "pt_length": [1, 16]}),
        ("full", {"layer_0": [0], "layer_1": [0], "layer_2": [0]}),
        ("sa", {"sa_size": [2, 16]}),
        ("sa-layer", {"sa_size": [0]}),
        ("sa-pa-layer", {"pa_size": [0, 1], "layer_2": [0]}),
        ("lora", {}),
        ("lora-layer", {"lora_rank": [0, 4]}),
        ("full-lora", {"sa_size": [0, 2], "pa_size": [0], "pt_length": [0, 1]}),
        ("full-lora", {"lora_rank": [2, 16], "layer_0": [1]}),
    ],
)
def test_narrowed_spaces_count_their_distinct_models(variant, narrowing):
    space = SearchSpace(3, 16, variant).narrow(narrowing)
    assert space.num_distinct == _brute_force_distinct(space)
    assert SearchSpace.from_dict(space.to_dict()) == space
    assert space.unnarrowed() == SearchSpace(3, 16, variant)


def test_narrowing_restricts_sampling_neighbours_and_encoding():
    import random

    space = SearchSpace(3, 16).narrow({"sa_size": [0, 8], "pa_size": [4], "layer_0": [1]})
    assert space.fixed() == {"pa_size": 4, "layer_0": 1, "lora_rank": 0}
    assert [d.name for d in space.dimensions] == ["sa_size", "pt_length", "layer_1", "layer_2"]
    rng = random.Random(0)
    for _ in range(50):
        config = space.sample(rng)
        assert config.sa_size in (0, 8) and config.pa_size == 4 and config.layers[0]
        assert space.decode(space.encode(config)) == config
        for near in space.neighbours(config):
            space.validate(near)
    with pytest.raises(SearchSpaceError, match=r"`pa_size` should be one of 4, got 8.*narrowed"):
        space.validate(PeftConfiguration(0, 8, 0, (True, True, True)))
    with pytest.raises(SearchSpaceError, match=r"`sa_size`.*values in \[0, 8\]"):
        space.narrow({"sa_size": [16]})
    with pytest.raises(SearchSpaceError, match="`pa_size` should be a searched key"):
        SearchSpace(3, 16, "sa").narrow({"pa_size": [0]})
    with pytest.raises(SearchSpaceError, match="holds no head-only model"):
        space.representative(PeftConfiguration(0, 0, 0, (False,) * 3))
    layers_free = SearchSpace(3, 16).narrow({"sa_size": [2, 8]})
    assert layers_free.representative(PeftConfiguration(0, 0, 0, (True,) * 3)) == PeftConfiguration(
        2, 0, 0, (False, False, False)
    )
