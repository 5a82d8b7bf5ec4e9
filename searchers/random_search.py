"""Random search over the AutoPEFT space: the paper's baseline.

Configurations are drawn uniformly (seeded) and never repeated: two
configurations that build the same model (:meth:`PeftConfiguration.model_key`)
count as one. Everything else (trial tracking, fidelity handling, JSON state)
is :class:`~.base.PeftSearcherBase`'s.
"""

from __future__ import annotations

from autopeft_ray.space import PeftConfiguration

from .base import PeftSearcherBase


class RandomPEFTSearcher(PeftSearcherBase):
    """Uniform random search without repeats (same arguments as :class:`PeftSearcherBase`).

    Example:
        >>> searcher = RandomPEFTSearcher(space, cost_fn=ParamCost(384, 22_713_216), seed=0)
        >>> tune.Tuner(trainable, tune_config=tune.TuneConfig(search_alg=searcher, num_samples=50))
    """

    def _propose(self) -> PeftConfiguration | None:
        return self._draw()
