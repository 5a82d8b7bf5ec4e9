"""The searchers' state file: versioned, portable JSON (no pickled library objects)."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autopeft_ray.exceptions import invalid_value
from autopeft_ray.space import PeftConfiguration, SearchSpace

from .records import TrialRecord

STATE_FORMAT = "autopeft-ray-searcher"
STATE_VERSION = 1


def header(searcher_name: str) -> dict[str, Any]:
    return {"format": STATE_FORMAT, "version": STATE_VERSION, "searcher": searcher_name}


def check_header(state: Mapping[str, Any], searcher_name: str, space: SearchSpace) -> None:
    """Raise unless ``state`` was written by ``searcher_name`` on ``space``."""
    if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
        raise invalid_value(
            "searcher state",
            {k: state.get(k) for k in ("format", "version")},
            expected=f"format {STATE_FORMAT!r} version {STATE_VERSION}",
        )
    if state.get("searcher") != searcher_name:
        raise invalid_value(
            "searcher state",
            state.get("searcher"),
            valid=[searcher_name],
            fix="Restore into the same searcher class that saved it.",
        )
    saved = state["settings"]["space"]
    if SearchSpace.from_dict(saved).unnarrowed() != space.unnarrowed():
        raise invalid_value(
            "searcher state space",
            saved,
            valid=[space.to_dict()],
            fix="Restore into a searcher built on the same search space.",
        )


def rng_to_json(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def rng_from_json(rng: random.Random, data: list[Any]) -> None:
    version, internal, gauss = data
    rng.setstate((version, tuple(internal), gauss))


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    """Write atomically (Tune may read the folder while a search runs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, allow_nan=False))
    tmp.replace(path)


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise invalid_value("checkpoint_path", str(path), expected="an existing state file")
    return json.loads(path.read_text())


class JsonState:
    """The state methods of :class:`.base.PeftSearcherBase`: the whole search as JSON.

    Tune pickles the searcher into its experiment folder and calls
    :meth:`save` / :meth:`restore` with a ``.pkl`` name; both write and read
    versioned JSON, so a state is portable and holds no library objects.
    """

    # What the searcher holds (set in PeftSearcherBase.__init__).
    space: SearchSpace
    seed: int
    fixed_config: dict[str, Any]
    max_concurrent: int | None
    min_fidelity: float | None
    max_t: float | None
    max_fidelity_seen: float | None
    num_suggested: int
    records: list[TrialRecord]
    timings: list[dict[str, Any]]
    _metric: Any
    _mode: Any
    _rng: random.Random
    _pending: dict[str, PeftConfiguration]
    _last_results: dict[str, dict[str, float | None]]
    _points_to_evaluate: list[PeftConfiguration]
    _candidates: list[PeftConfiguration] | None
    _seen: set[PeftConfiguration]

    def _space_changed(self) -> None:
        """Drop what was computed for the previous space (subclasses with caches)."""

    def _settings(self) -> dict[str, Any]:
        return {
            "space": self.space.to_dict(),
            "metric": self._metric,
            "mode": self._mode,
            "seed": self.seed,
            "fixed_config": self.fixed_config,
            "max_concurrent": self.max_concurrent,
            "min_fidelity": self.min_fidelity,
            "max_t": self.max_t,
        }

    def get_state(self) -> dict[str, Any]:
        """The whole search state as JSON-ready data (no pickled objects)."""
        return {
            **header(type(self).__name__),
            "settings": self._settings(),
            "rng_state": rng_to_json(self._rng),
            "num_suggested": self.num_suggested,
            "pending": {tid: c.to_dict() for tid, c in self._pending.items()},
            "last_results": self._last_results,
            "records": [r.to_dict() for r in self.records],
            "points_to_evaluate": [c.to_dict() for c in self._points_to_evaluate],
            "candidates": None
            if self._candidates is None
            else [c.to_dict() for c in self._candidates],
            "timings": self.timings,
            "max_fidelity_seen": self.max_fidelity_seen,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`get_state`'s output; the space must be the same."""
        check_header(state, type(self).__name__, self.space)
        settings = state["settings"]
        saved_space = SearchSpace.from_dict(settings["space"])
        if saved_space != self.space:  # narrowed by param_space when the state was saved
            self.space = saved_space
            self._space_changed()
        self._metric, self._mode = settings["metric"], settings["mode"]
        self.seed = int(settings["seed"])
        rng_from_json(self._rng, state["rng_state"])
        self.num_suggested = int(state["num_suggested"])
        self._pending = {tid: PeftConfiguration.from_dict(c) for tid, c in state["pending"].items()}
        self._last_results = {tid: dict(r) for tid, r in state["last_results"].items()}
        self.records = [TrialRecord.from_dict(r) for r in state["records"]]
        self._points_to_evaluate = [
            PeftConfiguration.from_dict(c) for c in state["points_to_evaluate"]
        ]
        candidates = state.get("candidates")  # absent from states saved before candidates
        self._candidates = (
            None if candidates is None else [PeftConfiguration.from_dict(c) for c in candidates]
        )
        self.timings = list(state.get("timings", []))
        self.max_fidelity_seen = state.get("max_fidelity_seen")
        self._seen = {c.canonical() for c in self._pending.values()}
        self._seen.update(r.config.canonical() for r in self.records)

    def save(self, checkpoint_path: str) -> None:
        """Write :meth:`get_state` as JSON (Tune calls this with a ``.pkl`` name)."""
        write_json(checkpoint_path, self.get_state())

    def restore(self, checkpoint_path: str) -> None:
        """Load a state written by :meth:`save`."""
        self.set_state(read_json(checkpoint_path))

    def __getstate__(self) -> dict[str, Any]:
        # Tuner pickles the searcher; fitted models are caches, not state.
        state = dict(self.__dict__)
        for key in self._transient_attributes():
            state[key] = None
        return state

    def _transient_attributes(self) -> tuple[str, ...]:
        return ()
