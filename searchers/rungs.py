"""Every rung of a trial, for a searcher that fits early results (``multi_fidelity``).

Ray Tune hands a searcher each intermediate result (``on_trial_result``) and
then the last one (``on_trial_complete``). A trial that ASHA promoted from
rung 1 to the target reported the same configuration at several fidelities;
fitting those results together shows the model how a configuration's score
at a low rung relates to its score at the target, which a single result per
trial cannot (BENCHMARKS.md, "Learning from every rung").

:class:`RungMemory` keeps the ``(fidelity, score)`` pairs a running trial
reports and, when it ends, stores the ones worth fitting
(:func:`~.records.thin_rungs`) on its record as
:attr:`~.records.TrialRecord.earlier`. Only searchers with
``multi_fidelity=True`` keep them; the pairs of running trials are part of
the saved state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from autopeft_ray.objectives import FAILED, FIDELITY

from .records import TrialRecord, thin_rungs


class RungMemory:
    """Mixin for :class:`~.base.PeftSearcherBase` subclasses (before it in the bases)."""

    # What the host searcher has.
    multi_fidelity: bool
    records: list[TrialRecord]
    _metric: Any
    _last_results: dict[str, dict[str, float | None]]

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        super().on_trial_result(trial_id, result)  # type: ignore[misc]
        kept = self._last_results.get(trial_id) if self.multi_fidelity else None
        if kept is not None:
            fidelity, score = kept.get(FIDELITY), kept.get(self._metric)
            if fidelity is not None and score is not None:
                self._reported_map().setdefault(trial_id, []).append((fidelity, score))

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        reported = self._reported_map().pop(trial_id, [])
        super().on_trial_complete(trial_id, result, error)  # type: ignore[misc]
        if not reported or not self.records:
            return
        record = self.records[-1]  # this trial's, also when it replaced a failure (a retry)
        if record.trial_id == trial_id and record.status != FAILED and record.fidelity:
            earlier = thin_rungs(reported, record.fidelity)
            self.records[-1] = dataclasses.replace(record, earlier=earlier)

    def _reported_map(self) -> dict[str, list[tuple[float, float]]]:
        """Running trial id -> its ``(fidelity, score)`` results so far."""
        if getattr(self, "_reported", None) is None:  # new, or pickled before this mixin
            self._reported: dict[str, list[tuple[float, float]]] = {}
        return self._reported

    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = super().get_state()  # type: ignore[misc]
        reported = self._reported_map().items()
        state["reported"] = {tid: [list(pair) for pair in pairs] for tid, pairs in reported}
        return state

    def set_state(self, state: Mapping[str, Any]) -> None:
        super().set_state(state)  # type: ignore[misc]
        self._reported = {
            tid: [(float(f), float(v)) for f, v in pairs]
            for tid, pairs in (state.get("reported") or {}).items()
        }
