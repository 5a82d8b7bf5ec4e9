"""Fixtures for the searcher tests: a small real space, the synthetic problem, drivers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from autopeft_ray.searchers import (
    AutoPEFTSearcher,
    AxPEFTSearcher,
    PeftSearcherBase,
    RandomPEFTSearcher,
)
from autopeft_ray.space import PeftConfiguration, SearchSpace
from autopeft_ray.testing.synthetic import SyntheticPeftProblem

#: NUTS as small as BoTorch's own SAAS tests use.
TINY_MODEL = {
    "num_initial": 5,
    "nuts_warmup": 8,
    "nuts_samples": 5,
    "nuts_thinning": 1,
    "num_restarts": 4,
    "raw_samples": 64,
    "mc_samples": 16,
}
#: The Ax-backed searcher with Ax's MAP SAAS model (no NUTS) and an acquisition
#: optimiser as small as TINY_MODEL's: seconds per step.
TINY_AX = {"num_initial": 5, "surrogate": "saas-map", "num_restarts": 4, "raw_samples": 64}


@pytest.fixture(scope="session")
def space() -> SearchSpace:
    """4 layers, width 64: 7 encoded dimensions, 5,041 distinct models."""
    return SearchSpace(num_layers=4, hidden_size=64)


@pytest.fixture(scope="session")
def problem(space: SearchSpace) -> SyntheticPeftProblem:
    return SyntheticPeftProblem(space, seed=0)


@pytest.fixture(scope="session")
def jax_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """JAX's compilation cache in pytest's cache folder (not the home folder).

    A warm cache saves ~25 s of compiling NUTS per session; it changes speed only.
    With ``-p no:cacheprovider`` it is a fresh temporary folder.
    """
    cache = getattr(request.config, "cache", None)
    if cache is None:
        return str(tmp_path_factory.mktemp("autopeft_jax_cache"))
    return str(cache.mkdir("autopeft_jax_cache"))


@pytest.fixture
def make_searcher(
    space: SearchSpace, problem: SyntheticPeftProblem, jax_cache: str
) -> Callable[..., PeftSearcherBase]:
    """``make_searcher(kind, **overrides)`` for kind ``"autopeft"``, ``"ax"`` or ``"random"``."""

    def make(kind: str, **overrides: Any) -> PeftSearcherBase:
        kwargs: dict[str, Any] = {"cost_fn": problem.cost, "seed": 0}
        if kind == "autopeft":
            kwargs.update(TINY_MODEL, jax_cache_dir=jax_cache)
            kwargs.update(overrides)
            return AutoPEFTSearcher(space, **kwargs)
        if kind == "ax":
            kwargs.update(TINY_AX, jax_cache_dir=jax_cache)
            kwargs.update(overrides)
            return AxPEFTSearcher(space, **kwargs)
        kwargs.update(overrides)
        return RandomPEFTSearcher(space, **kwargs)

    return make


class Driver:
    """Runs a searcher like Tune does: up to ``concurrency`` trials, oldest finishes first."""

    def __init__(self, searcher: PeftSearcherBase, problem: SyntheticPeftProblem) -> None:
        self.searcher = searcher
        self.problem = problem
        self.running: list[tuple[str, dict[str, Any]]] = []
        self.suggested: list[PeftConfiguration] = []
        self.counter = 0

    def suggest(self) -> dict[str, Any] | str | None:
        trial_id = f"trial_{self.counter:04d}"
        config = self.searcher.suggest(trial_id)
        if isinstance(config, dict):
            self.counter += 1
            self.running.append((trial_id, config))
            self.suggested.append(self.problem.space.from_trial_config(config))
        return config

    def finish_oldest(self, result: dict[str, Any] | None = None, error: bool = False) -> str:
        trial_id, config = self.running.pop(0)
        if result is None and not error:
            result = self.problem.evaluate_trial_config(config)
        self.searcher.on_trial_complete(trial_id, result, error=error)
        return trial_id

    def run(self, trials: int, concurrency: int = 2) -> None:
        """Suggest until ``trials`` were suggested in all, then finish every trial."""
        target = self.counter + trials
        while self.counter < target:
            if len(self.running) < concurrency:
                config = self.suggest()
                if config == "FINISHED":
                    break
                if config is not None:
                    continue
            self.finish_oldest()
        while self.running:
            self.finish_oldest()


@pytest.fixture
def driver(problem: SyntheticPeftProblem) -> Callable[[PeftSearcherBase], Driver]:
    return lambda searcher: Driver(searcher, problem)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The contract runs every searcher on the space with LoRA, and the fast ones on the
    paper's space too: the Ax-backed searcher's steps take tens of seconds, and its
    behaviour on the paper's space is covered by test_axsearch.py."""
    dropped = [
        item
        for item in items
        if item.path.name == "test_searcher_contract.py"
        and getattr(item, "callspec", None) is not None
        and item.callspec.params.get("space") == "full"
        and item.callspec.params.get("kind") == "ax"
    ]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]
