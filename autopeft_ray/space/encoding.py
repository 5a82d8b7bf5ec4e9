"""Configurations as numeric vectors for the GP, and their canonical form.

A configuration of a :class:`~autopeft_ray.space.SearchSpace` is encoded as a
vector in ``[0, 1]^d``: each searched size by its rank on the binary-log scale
(``rank / (choices - 1)``), then each searched layer bit as 0/1. Every
degenerate configuration (:attr:`PeftConfiguration.is_degenerate`) is one
model; :func:`canonical_encoding` and :func:`canonicalize` put all of them at
the zero vector, so a surrogate cannot believe they differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from autopeft_ray.exceptions import SearchSpaceError, invalid_value

from .configuration import SIZE_KEYS, PeftConfiguration

if TYPE_CHECKING:
    from torch import Tensor

    from .space import SearchSpace


def encode(space: SearchSpace, config: PeftConfiguration) -> list[float]:
    """Numeric vector in ``[0, 1]^d``: sizes by their log-scale rank, layer bits as 0/1."""
    space.validate(config)
    flat = config.to_dict()
    return [d.choices.index(flat[d.name]) / (len(d.choices) - 1) for d in space.dimensions]


def decode(space: SearchSpace, vector: Sequence[float]) -> PeftConfiguration:
    """Inverse of :func:`encode`; each coordinate is rounded to the nearest choice."""
    dims = space.dimensions
    if len(vector) != len(dims):
        raise invalid_value(
            "vector", list(vector), expected=f"{len(dims)} coordinates", cls=SearchSpaceError
        )
    flat: dict[str, Any] = dict(space.fixed())
    for d, x in zip(dims, vector, strict=True):
        rank = min(max(round(float(x) * (len(d.choices) - 1)), 0), len(d.choices) - 1)
        flat[d.name] = d.choices[rank]
    return PeftConfiguration.from_dict(flat)


def encoded_choices(space: SearchSpace) -> list[list[float]]:
    """Per dimension, the encoded values allowed (BoTorch ``discrete_choices``)."""
    return [[i / (len(d.choices) - 1) for i in range(len(d.choices))] for d in space.dimensions]


def canonical_encoding(space: SearchSpace, config: PeftConfiguration) -> list[float]:
    """:func:`encode`, with every degenerate configuration at all zeros."""
    if config.is_degenerate:
        return [0.0] * len(space.dimensions)
    return encode(space, config)


def canonicalize(X: Tensor, space: SearchSpace) -> Tensor:
    """Map encodings of degenerate configurations to all zeros (``... x d`` in, same out).

    The rule of :attr:`PeftConfiguration.is_degenerate` on encoded vectors: every
    module size 0 (a searched size at encoded 0 is size 0 when 0 is among its
    values), or every layer bit 0. The zero vector is itself degenerate whenever
    the space holds a degenerate configuration, so it is their one encoding.
    """
    import torch

    fixed = space.fixed()
    dims = space.dimensions
    sizes = [i for i, d in enumerate(dims) if d.name in SIZE_KEYS.values()]
    layers = [i for i, d in enumerate(dims) if d.name not in SIZE_KEYS.values()]
    no_fixed_size = all(v == 0 for k, v in fixed.items() if k in SIZE_KEYS.values())
    no_fixed_layer = all(v == 0 for k, v in fixed.items() if k not in SIZE_KEYS.values())
    false = torch.zeros(X.shape[:-1], dtype=torch.bool, device=X.device)
    sizes_zero = false
    if no_fixed_size and all(dims[i].choices[0] == 0 for i in sizes):
        sizes_zero = (X[..., sizes] == 0).all(dim=-1)
    layers_off = (X[..., layers] == 0).all(dim=-1) if no_fixed_layer else false
    degenerate = sizes_zero | layers_off
    return torch.where(degenerate.unsqueeze(-1), torch.zeros_like(X), X)
