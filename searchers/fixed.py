"""Run a fixed list of trial configs through Ray Tune (re-evaluation, transfer, presets).

Ray's ``BasicVariantGenerator(points_to_evaluate=...)`` only fills keys that
exist in the ``param_space``; here each trial config is complete (a
configuration or a preset, plus its settings), so this searcher hands them out
one by one and then reports ``FINISHED``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from ray.tune.search import Searcher

from autopeft_ray.exceptions import invalid_value


class FixedConfigurations(Searcher):
    """Suggest each of ``configs`` once, in order."""

    def __init__(self, configs: Sequence[dict[str, Any]]) -> None:
        if not configs or not all(isinstance(c, dict) for c in configs):
            raise invalid_value(
                "configs", configs, expected="a non-empty list of trial config dicts"
            )
        super().__init__()
        self._configs = [copy.deepcopy(c) for c in configs]
        self._next = 0

    # Ray annotates ``Optional[Dict]`` but documents ``Searcher.FINISHED`` (a str).
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        if self._next >= len(self._configs):
            return Searcher.FINISHED
        self._next += 1
        return copy.deepcopy(self._configs[self._next - 1])

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        pass

    def get_state(self) -> dict[str, Any]:
        return {"configs": self._configs, "next": self._next}

    def set_state(self, state: dict[str, Any]) -> None:
        self._configs, self._next = state["configs"], state["next"]
