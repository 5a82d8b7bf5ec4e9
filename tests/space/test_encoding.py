"""Encodings for the GP, and the one canonical encoding of degenerate configurations."""

from __future__ import annotations

import random

import torch

from autopeft_ray.space import VARIANTS, SearchSpace
from autopeft_ray.space.encoding import canonical_encoding as encode
from autopeft_ray.space.encoding import canonicalize


def test_canonicalize_maps_degenerate_encodings_to_zero():
    space = SearchSpace(num_layers=3, hidden_size=8)
    X = torch.tensor(
        [
            encode(space, space.configuration(sa_size=4, layers=[1, 0, 1])),
            space.encode(space.configuration(sa_size=4, layers=[0, 0, 0])),  # no layer
            space.encode(space.configuration(layers=[1, 1, 0])),  # no module
        ],
        dtype=torch.float64,
    )
    out = canonicalize(X, space)
    assert torch.equal(out[0], X[0])
    assert torch.equal(out[1:], torch.zeros(2, X.shape[1], dtype=torch.float64))
    assert encode(space, space.configuration(pa_size=2, layers=[0, 0, 0])) == [0.0] * 6

    fixed_layers = SearchSpace(num_layers=3, hidden_size=8, variant="sa")
    Z = torch.tensor([[0.0], [0.5]], dtype=torch.float64)
    assert torch.equal(canonicalize(Z, fixed_layers), Z)


def test_canonicalize_agrees_with_the_degenerate_rule():
    """The tensor rule and ``PeftConfiguration.is_degenerate`` are one rule."""
    rng = random.Random(0)
    spaces = [SearchSpace(num_layers=3, hidden_size=8, variant=v) for v in VARIANTS]
    spaces += [
        SearchSpace(3, 8).narrow({"sa_size": [2, 4]}),
        SearchSpace(3, 8).narrow({"sa_size": [0, 4], "pa_size": [1], "layer_0": [1]}),
        SearchSpace(3, 8).narrow({"layer_0": [0], "pt_length": [0, 8]}),
        SearchSpace(3, 8, "sa").narrow({"sa_size": [1, 2]}),
    ]
    for space in spaces:
        configs = [space.sample(rng) for _ in range(200)]
        X = torch.tensor([space.encode(c) for c in configs], dtype=torch.float64)
        zero = (canonicalize(X, space) == 0).all(dim=-1)
        for config, is_zero, row in zip(configs, zero.tolist(), X, strict=True):
            assert is_zero == (config.is_degenerate or not row.any().item()), config
            assert encode(space, config) == (
                [0.0] * len(space.dimensions) if config.is_degenerate else space.encode(config)
            )


def test_encode_decode_round_trip():
    space = SearchSpace(num_layers=4, hidden_size=16)
    rng = random.Random(1)
    for _ in range(50):
        config = space.sample(rng)
        assert space.decode(space.encode(config)) == config
    assert [len(c) for c in space.encoded_choices()] == [6, 6, 6, 2, 2, 2, 2]
