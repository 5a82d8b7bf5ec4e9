"""Searcher states written by earlier versions load and continue as they would have.

``tests/fixtures/searcher_state`` holds states saved by the mixin-based searchers
(commit 42a126b, state format version 1): a JSON state of each searcher, mid-search
(failures, rungs, a trial running), a pickled AutoPEFT searcher (Tune's
``tuner.pkl``), and the two configurations each suggested next after a restore;
and the AutoPEFT and Ax searchers pickled by the composed layout (commit 3d106ed,
``make_pickles.py``), with what each suggested next.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.searchers import AutoPEFTSearcher, AxPEFTSearcher, RandomPEFTSearcher
from autopeft_ray.space import PeftConfiguration, SearchSpace
from autopeft_ray.testing.synthetic import SyntheticPeftProblem

FIXTURES = Path(__file__).parents[1] / "fixtures" / "searcher_state"
SPACE = SearchSpace(num_layers=4, hidden_size=64)
PROBLEM = SyntheticPeftProblem(SPACE, seed=0)
COMMON = {"cost_fn": PROBLEM.cost, "seed": 3, "jax_cache_dir": None}
#: The Ax searcher's problem, on a smaller space: an Ax step takes seconds on it.
AX_PROBLEM = SyntheticPeftProblem(SearchSpace(num_layers=3, hidden_size=16), seed=0)
MODEL = {"num_initial": 5, "surrogate": "saas-map"}
SEARCHERS = {
    "autopeft": lambda: AutoPEFTSearcher(
        SPACE,
        **MODEL,
        multi_fidelity=True,
        cost_input=True,
        num_restarts=4,
        raw_samples=64,
        mc_samples=16,
        **COMMON,
    ),
    "ax": lambda: AxPEFTSearcher(
        AX_PROBLEM.space, **MODEL, **dict(COMMON, cost_fn=AX_PROBLEM.cost)
    ),
    "random": lambda: RandomPEFTSearcher(SPACE, cost_fn=PROBLEM.cost, seed=3),
}


def next_two(searcher: Any) -> list[Any]:
    out = []
    for j in range(2):
        config = searcher.suggest(f"next{j}")
        out.append(
            config if not isinstance(config, dict) else searcher.space.from_trial_config(config)
        )
    return out


def expected(name: str) -> list[Any]:
    saved = json.loads((FIXTURES / "expected-next.json").read_text())[name]
    return [c if not isinstance(c, dict) else PeftConfiguration.from_dict(c) for c in saved]


@pytest.mark.parametrize("name", ["random", "autopeft", "ax"])
def test_a_version_1_state_loads_and_suggests_what_it_did(name):
    searcher = SEARCHERS[name]()
    searcher.restore(str(FIXTURES / f"{name}-v1.json"))
    saved = json.loads((FIXTURES / f"{name}-v1.json").read_text())
    assert [r.to_dict() for r in searcher.records] == saved["records"]
    assert {t: c.to_dict() for t, c in searcher.pending.items()} == saved["pending"]
    assert next_two(searcher) == expected(name)
    if name == "autopeft":
        assert any(r.earlier for r in searcher.records), "the rungs were kept"
        assert searcher.get_state()["reported"] == saved["reported"]


def old_attributes(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The attribute dict of the pickled pre-composition searcher, as Tune's pickle holds it."""
    captured: dict[str, Any] = {}
    with monkeypatch.context() as patch:
        patch.setattr(AutoPEFTSearcher, "__setstate__", lambda self, state: captured.update(state))
        pickle.loads((FIXTURES / "autopeft-pickled-v1.pkl").read_bytes())
    return captured


def test_a_searcher_pickled_before_the_composition_revives_with_its_trials(monkeypatch):
    old = old_attributes(monkeypatch)
    assert "ledger" not in old and "_pending" in old  # the old layout
    revived = pickle.loads((FIXTURES / "autopeft-pickled-v1.pkl").read_bytes())
    assert isinstance(revived, AutoPEFTSearcher)
    assert revived.records == old["records"] and revived.pending == old["_pending"]
    assert revived.num_suggested == old["num_suggested"]
    assert revived.multi_fidelity and revived.cost_input and revived.num_restarts == 4
    assert revived.score_model.map_fit == old["_map_fit"]
    # It goes on as the JSON state of the same search does.
    assert next_two(revived) == expected("autopeft")


def test_older_pickles_get_the_defaults_of_what_they_lacked(monkeypatch):
    """A searcher pickled before the feasibility model, or before the default initial
    design (``num_initial`` was then a plain attribute), revives with the default and
    the value it had."""
    old = old_attributes(monkeypatch)
    del old["model_feasibility"], old["_feasibility_cache"]
    old["num_initial"] = old.pop("initial_given")
    revived = AutoPEFTSearcher.__new__(AutoPEFTSearcher)
    revived.__setstate__(old)
    assert revived.model_feasibility is True and revived.num_initial == 5
    assert revived.score_model.feasibility is None
    assert revived._saas._feasibility(revived._snapshot()) is not None  # refitted from records


@pytest.mark.parametrize("name", ["autopeft", "ax"])
def test_a_searcher_pickled_by_the_composed_layout_goes_on_as_it_would_have(name):
    """Pickled at 3d106ed, before the surrogate settings were one object: the score
    model takes its old attributes over, the Ax proposer (caches only) is rebuilt."""
    revived = pickle.loads((FIXTURES / f"{name}-pickled-3d106ed.pkl").read_bytes())
    assert type(revived) is {"autopeft": AutoPEFTSearcher, "ax": AxPEFTSearcher}[name]
    assert revived.surrogate_settings.surrogate == "saas-map"
    if name == "autopeft":
        assert revived.score_model.settings == revived.surrogate_settings
        assert revived.score_model.map_fit is not None
    saved = json.loads((FIXTURES / "expected-next-pickled-3d106ed.json").read_text())[name]
    assert next_two(revived) == [PeftConfiguration.from_dict(c) for c in saved]


def test_a_state_of_another_version_is_refused_with_what_to_do():
    state = json.loads((FIXTURES / "random-v1.json").read_text())
    searcher = SEARCHERS["random"]()
    with pytest.raises(ConfigurationError, match=r"searcher state.*version"):
        searcher.set_state({**state, "version": 2})
