"""A cheap synthetic two-objective problem over the real AutoPEFT search space.

It stands in for training when testing and benchmarking searchers: one
evaluation takes microseconds instead of minutes, yet the objective has the
structure the searchers must cope with on real PEFT runs.

Score model (higher is better, roughly accuracy-like in [0, 1]):

* **Capacity with diminishing returns.** Per active layer, the modules' sizes
  add up, weighted by their value; the layer contributes the log of that total
  (relative to the log of the hidden size), and the score saturates as
  ``1 - exp(-3 * capacity / max capacity of the layers' weights)``.
* **Value for cost differs per module.** The parallel adapter gives the most
  score per parameter, the serial adapter a little less, prefix tuning (same
  parameter cost per unit of length as an adapter of that size) the least, and
  with a larger variance across layers. LoRA (in the ``full-lora`` space) gives
  a little less per parameter than the serial adapter.
* **Layers matter unequally.** Upper layers weigh more (weights grow linearly
  with depth, as task-specific features live higher up); a small bonus for
  contiguous runs of active layers models interaction between neighbours.
* **Too much capacity overfits a little:** a small penalty grows with the
  parameter fraction, so the best score is not at the largest configuration.
* **Seeded noise.** Gaussian noise with standard deviation ``noise``, drawn
  from a generator keyed by ``(seed, configuration)``: evaluating the same
  configuration twice with one seed gives the same value, as a seeded training
  run would.
* **Fidelity.** A result at ``fidelity < target_fidelity`` is lower, following
  a saturating learning curve, as an early-stopped trial would report.
* **Successive halving** (:func:`successive_halving`): what an ASHA-like
  scheduler would let a set of configurations report, for model studies
  without Tune.
* **Variant: only some dimensions matter** (``relevant``). Every other
  dimension is held at a fixed value (layers on, sizes at their middle
  choice) before scoring, so the score depends on the named ones only: the
  ground truth for :mod:`searchers.relevance`.

The parameter fraction is exact: :class:`autopeft_ray.objectives.cost.ParamCost`.
"""

from __future__ import annotations

import json
import math
import random
import zlib
from dataclasses import dataclass, field
from typing import Any

from autopeft_ray.exceptions import invalid_value
from autopeft_ray.objectives import FIDELITY, PARAM_FRACTION, SCORE, TARGET_FIDELITY
from autopeft_ray.objectives.cost import ParamCost
from autopeft_ray.space import SIZE_KEYS, PeftConfiguration, SearchSpace

#: Score per log2-unit of module size per layer: parallel > serial > prefix. A LoRA rank
#: costs twice an adapter unit (``4 r h`` against ``2 D h``) and is worth a little less
#: than two serial units.
MODULE_VALUE = {"sa": 1.0, "pa": 1.25, "pt": 0.55, "lora": 1.6}


def bert_like_base_params(num_layers: int, hidden_size: int, vocab_size: int = 30522) -> int:
    """Base-model parameters of a BERT-shaped encoder (embeddings + layers, no head)."""
    per_layer = 12 * hidden_size * hidden_size + 13 * hidden_size
    embeddings = (vocab_size + 512 + 2) * hidden_size + 2 * hidden_size
    return num_layers * per_layer + embeddings


@dataclass(frozen=True)
class SyntheticPeftProblem:
    """Synthetic ``configuration -> (score, param_fraction)`` (see module docstring).

    Args:
        space: the search space whose configurations are evaluated.
        base_params: base-model parameter count for the cost; ``None`` uses a
            BERT-shaped count for the space's depth and width.
        noise: standard deviation of the score noise.
        seed: noise seed.
        head_score: score of the degenerate (head-only) configuration.
        max_score: the score approached with ample capacity on every layer.
        target_fidelity: the fidelity (steps) a full evaluation represents.
        relevant: the dimensions the score depends on (``None``: all of them).
    """

    space: SearchSpace
    base_params: int | None = None
    noise: float = 0.005
    seed: int = 0
    head_score: float = 0.60
    max_score: float = 0.90
    target_fidelity: int = 100
    relevant: tuple[str, ...] | None = None
    cost: ParamCost = field(init=False)

    def __post_init__(self) -> None:
        if self.noise < 0 or not math.isfinite(self.noise):
            raise invalid_value("noise", self.noise, expected="a non-negative float")
        if not 0 <= self.head_score < self.max_score:
            raise invalid_value(
                "head_score", self.head_score, expected=f"in [0, max_score={self.max_score})"
            )
        if self.target_fidelity < 1:
            raise invalid_value("target_fidelity", self.target_fidelity, expected="an int >= 1")
        names = [d.name for d in self.space.dimensions]
        for name in self.relevant or ():
            if name not in names:
                raise invalid_value("relevant", name, valid=names)
        base = self.base_params
        if base is None:
            base = bert_like_base_params(self.space.num_layers, self.space.hidden_size)
        object.__setattr__(self, "cost", ParamCost(self.space.hidden_size, int(base)))

    def param_fraction(self, config: PeftConfiguration) -> float:
        return self.cost(config)

    def noiseless_score(self, config: PeftConfiguration) -> float:
        """The score without noise, at full fidelity."""
        config = self._only_relevant(self.space.validate(config)).model_key()
        if config.is_degenerate:
            return self.head_score
        num_layers = config.num_layers
        top = max(num_layers - 1, 1)
        depth_weight = [1.0 + 2.0 * i / top for i in range(num_layers)]
        # Prefix tuning's value grows faster with depth than the adapters'.
        pt_value = [MODULE_VALUE["pt"] * (0.4 + 1.2 * i / top) for i in range(num_layers)]
        log_width = math.log2(1 + self.space.hidden_size)
        capacity = 0.0
        for i in config.active_layers:
            size = (
                MODULE_VALUE["sa"] * config.sa_size
                + MODULE_VALUE["pa"] * config.pa_size
                + pt_value[i] * config.pt_length
                + MODULE_VALUE["lora"] * config.lora_rank
            )
            # Diminishing returns within a layer: the log of the weighted total size.
            capacity += depth_weight[i] * math.log2(1 + size) / log_width
        # Serial and parallel adapters together add a little on top of their sum.
        if config.sa_size and config.pa_size:
            capacity *= 1.05
        runs = sum(1 for i in range(1, num_layers) if config.layers[i] and config.layers[i - 1])
        capacity *= 1.0 + 0.15 * runs / top
        gain = 1.0 - math.exp(-3.0 * capacity / sum(depth_weight))
        overfit = 0.15 * self.param_fraction(config)
        return self.head_score + (self.max_score - self.head_score) * gain - overfit

    def _only_relevant(self, config: PeftConfiguration) -> PeftConfiguration:
        """``config`` with every dimension outside ``relevant`` at its fixed value."""
        if self.relevant is None:
            return config
        flat = config.to_dict()
        for d in self.space.dimensions:
            if d.name not in self.relevant:
                sizes = d.name in SIZE_KEYS.values()
                flat[d.name] = d.choices[len(d.choices) // 2] if sizes else 1
        return PeftConfiguration.from_dict(flat)

    def score(self, config: PeftConfiguration, fidelity: int | None = None) -> float:
        """The noisy score at ``fidelity`` (default: the target fidelity)."""
        fidelity = self.target_fidelity if fidelity is None else int(fidelity)
        if fidelity < 1:
            raise invalid_value("fidelity", fidelity, expected="an int >= 1")
        full = self.noiseless_score(config)
        progress = 1.0 - math.exp(-4.0 * min(fidelity, self.target_fidelity) / self.target_fidelity)
        progress /= 1.0 - math.exp(-4.0)
        flat = config.model_key().to_dict()
        if not flat["lora_rank"]:  # the noise of configurations without LoRA is as it was
            del flat["lora_rank"]
        key = json.dumps([self.seed, flat], sort_keys=True)
        rng = random.Random(zlib.crc32(key.encode()))
        return self.head_score + (full - self.head_score) * progress + rng.gauss(0.0, self.noise)

    def evaluate(self, config: PeftConfiguration, fidelity: int | None = None) -> dict[str, Any]:
        """A result dict as a trainable would report it."""
        fidelity = self.target_fidelity if fidelity is None else int(fidelity)
        return {
            SCORE: self.score(config, fidelity),
            PARAM_FRACTION: self.param_fraction(config),
            FIDELITY: fidelity,
            TARGET_FIDELITY: self.target_fidelity,
        }

    def evaluate_trial_config(self, trial_config: dict[str, Any]) -> dict[str, Any]:
        """:meth:`evaluate` on a flat Ray Tune trial config (extra keys ignored)."""
        return self.evaluate(self.space.from_trial_config(trial_config))


def successive_halving(
    problem: SyntheticPeftProblem,
    configs: list[PeftConfiguration],
    rungs: tuple[int, ...],
    stops: tuple[int, ...],
) -> list[tuple[PeftConfiguration, list[tuple[int, float]]]]:
    """Synchronous successive halving of ``configs`` on ``problem``.

    At each rung every configuration still running reports its score; then
    the ``stops[i]`` lowest-scoring ones end at ``rungs[i]``. Returns the
    configurations that ended, in the order they ended, each with its
    reported ``(fidelity, score)`` results. ``stops`` must add up to
    ``len(configs)``.
    """
    if len(rungs) != len(stops) or sum(stops) != len(configs):
        raise invalid_value(
            "stops", stops, expected=f"{len(rungs)} counts adding up to {len(configs)}"
        )
    reported: list[list[tuple[int, float]]] = [[] for _ in configs]
    running, ended = list(range(len(configs))), []
    for fidelity, stop in zip(rungs, stops, strict=True):
        for i in running:
            reported[i].append((fidelity, problem.score(configs[i], fidelity)))
        running.sort(key=lambda i: reported[i][-1][1])
        ended += running[:stop]
        running = running[stop:]
    return [(configs[i], reported[i]) for i in ended]
