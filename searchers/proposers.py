"""Proposers: where a searcher's next configuration comes from, behind one small protocol.

A proposer turns a :class:`~.ledger.Snapshot` of the search into a
:class:`Step`: one configuration not seen before (or ``None``), with the
timings and numerical warnings of computing it. It never changes the
snapshot or the searcher, so the same proposer runs on Tune's event loop or,
wrapped in :class:`~.background.BackgroundProposer`, in a thread.

* :class:`RandomProposer`: uniform draws without repeats, over the space or
  over given ``candidates``; every searcher's initial design and fallback.
* :class:`~.saas.SaasProposer`: the AutoPEFT model step (SAAS GP + qLogNEHVI).
* :class:`~.axsearch.AxProposer`: one step of Ax's generation strategy.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Protocol

from autopeft_ray.space import PeftConfiguration, SearchSpace
from autopeft_ray.space.encoding import canonical_encoding

from .ledger import Snapshot

#: Below this many configurations, an exhausted random sampler enumerates the rest.
ENUMERATE_LIMIT = 1 << 18


@dataclass
class Step:
    """What a proposer computed: a configuration (``None``: none), its timings and warnings."""

    config: PeftConfiguration | None
    #: Entries for the searcher's ``timings`` (one per model step, with its ``fallback``).
    timings: list[dict[str, Any]] = field(default_factory=list)
    #: Known-harmless numerical warnings while computing it: "Category: message" -> count.
    warnings: dict[str, int] = field(default_factory=dict)


class Proposer(Protocol):
    """Proposes one configuration not in ``snapshot.seen`` (``rng`` for random choices)."""

    def propose(self, snapshot: Snapshot, rng: random.Random) -> Step: ...


class RandomProposer:
    """Uniform draws from ``space`` (or from ``candidates``) of configurations not seen."""

    def __init__(
        self, space: SearchSpace, candidates: Sequence[PeftConfiguration] | None = None
    ) -> None:
        self.space = space
        self.candidates = None if candidates is None else list(candidates)

    def propose(self, snapshot: Snapshot, rng: random.Random) -> Step:
        return Step(self.draw(snapshot.seen, rng))

    def draw(
        self, seen: AbstractSet[PeftConfiguration], rng: random.Random
    ) -> PeftConfiguration | None:
        """A uniformly drawn configuration not in ``seen``; ``None`` if none is left."""
        if self.candidates is not None:
            left = self.unseen_candidates(seen)
            return rng.choice(left) if left else None
        for _ in range(256):
            config = self.space.sample(rng)
            if config.model_key() not in seen:
                return config
        if self.space.cardinality > ENUMERATE_LIMIT:
            while True:  # nearly all of a huge space seen: keep drawing
                config = self.space.sample(rng)
                if config.model_key() not in seen:
                    return config
        left = self.unseen_configurations(seen)
        return rng.choice(left) if left else None

    def unseen_candidates(self, seen: AbstractSet[PeftConfiguration]) -> list[PeftConfiguration]:
        """The candidates not in ``seen``, in their given order (needs ``candidates``)."""
        return [c for c in self.candidates or () if c.model_key() not in seen]

    def nearest_unseen_candidate(
        self, config: PeftConfiguration, seen: AbstractSet[PeftConfiguration]
    ) -> PeftConfiguration | None:
        """The candidate not in ``seen`` nearest ``config`` (L1 distance between their
        canonical encodings, the first in the given order on a tie); ``config`` itself
        when it is one; ``None`` when none is left (needs ``candidates``)."""
        left = self.unseen_candidates(seen)
        if not left:
            return None
        key = config.model_key()
        for candidate in left:
            if candidate.model_key() == key:
                return candidate
        target = canonical_encoding(self.space, config)

        def distance(candidate: PeftConfiguration) -> float:
            encoding = canonical_encoding(self.space, candidate)
            return sum(abs(a - b) for a, b in zip(encoding, target, strict=True))

        return min(left, key=distance)

    def unseen_configurations(
        self, seen: AbstractSet[PeftConfiguration]
    ) -> list[PeftConfiguration]:
        """Every model of the space not in ``seen``, one configuration each, in lattice
        order (enumerates ``space.cardinality`` points: small spaces only)."""
        fixed = self.space.fixed()
        dims = self.space.dimensions
        left: dict[PeftConfiguration, PeftConfiguration] = {}
        for values in itertools.product(*(d.choices for d in dims)):
            flat = dict(fixed, **{d.name: v for d, v in zip(dims, values, strict=True)})
            config = PeftConfiguration.from_dict(flat)
            key = config.model_key()
            if key not in seen and key not in left:
                left[key] = config
        return list(left.values())
