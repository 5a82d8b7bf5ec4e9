"""The trial ledger: what a searcher knows about its trials, and the snapshot proposers see.

Tune never tells a searcher which trials run, so the searcher keeps a
:class:`TrialLedger`: the running trials (``trial id -> configuration``),
their last results and, for a multi-fidelity searcher, their rungs; the
finished trials as :class:`~.records.TrialRecord`; every configuration
suggested, compared by :meth:`PeftConfiguration.model_key` (the same model
is never suggested twice). The ledger writes and reads its part of the
searcher's JSON state.

A proposer never reads the live ledger: it gets a :class:`Snapshot`, an
immutable view of the trials with the objectives' direction and reference,
which a background thread can use while Tune's event loop goes on changing
the ledger.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autopeft_ray.objectives import COMPLETED, EARLY_STOPPED, FAILED, FIDELITY
from autopeft_ray.space import PeftConfiguration
from autopeft_ray.validation import finite_number

from .records import TrialRecord, below_largest_fidelity, keep_fields, thin_rungs, with_status


@dataclass(frozen=True)
class Snapshot:
    """The trials of a search at one moment, and what its proposers need to know about it.

    Attributes:
        records: the finished trials, in the order they ended.
        pending: ``(trial id, configuration)`` of the running trials.
        seen: the model key of every configuration suggested so far.
        num_suggested: suggestions made so far.
        default_target: the target fidelity of results that report none (the
            searcher's ``max_t``, else the largest fidelity seen).
        mode: ``"max"`` or ``"min"``: the direction of the score.
        reference: the hypervolume reference ``(score, param_fraction)`` in natural units.
    """

    records: tuple[TrialRecord, ...] = ()
    pending: tuple[tuple[str, PeftConfiguration], ...] = ()
    seen: frozenset[PeftConfiguration] = frozenset()
    num_suggested: int = 0
    default_target: float | None = None
    mode: str = "max"
    reference: tuple[float, float] = (0.0, 1.0)

    def utility(self, score: float) -> float:
        """The score with the sign that makes larger better."""
        return score if self.mode == "max" else -score

    def with_running(self, trial_id: str, config: PeftConfiguration) -> Snapshot:
        """This snapshot with ``config`` suggested and running as ``trial_id``."""
        return dataclasses.replace(
            self,
            pending=(*self.pending, (trial_id, config)),
            seen=self.seen | {config.model_key()},
            num_suggested=self.num_suggested + 1,
        )

    def with_status(self, status: str) -> list[TrialRecord]:
        """The finished trials of ``status``."""
        return with_status(self.records, status)


class TrialLedger:
    """Running and finished trials, and every configuration suggested (see the module).

    Args:
        keep_rungs: keep each running trial's ``(fidelity, score)`` results and
            store the ones worth fitting on its record (:func:`~.records.thin_rungs`);
            what a multi-fidelity model fits.
    """

    def __init__(self, keep_rungs: bool = False) -> None:
        self.keep_rungs = keep_rungs
        #: Running trials: trial id -> configuration.
        self.pending: dict[str, PeftConfiguration] = {}
        #: Running trials: trial id -> the fields of its last result a searcher needs.
        self.last_results: dict[str, dict[str, float | None]] = {}
        #: Running trials: trial id -> its ``(fidelity, score)`` results (``keep_rungs``).
        self.rungs: dict[str, list[tuple[float, float]]] = {}
        #: Finished trials, in the order they ended.
        self.records: list[TrialRecord] = []
        #: The model key of every configuration suggested (or evaluated outside).
        self.seen: set[PeftConfiguration] = set()
        self.num_suggested = 0
        #: The largest fidelity any result reported (the target when none is known).
        self.max_fidelity_seen: float | None = None

    # -- changes -------------------------------------------------------------
    def start(self, trial_id: str, config: PeftConfiguration) -> None:
        """``config`` runs as ``trial_id`` (a suggestion, or a trial evaluated outside)."""
        self.pending[trial_id] = config
        self.seen.add(config.model_key())

    def observe(self, trial_id: str, result: Mapping[str, Any], metric: str) -> None:
        """An intermediate result of a running trial (or of a failed one, rerun)."""
        if not result or not (trial_id in self.pending or self.failed_record(trial_id)):
            return
        kept = keep_fields(result, metric)
        self.last_results[trial_id] = kept
        self.see_fidelity(result)
        fidelity, score = kept.get(FIDELITY), kept.get(metric)
        if self.keep_rungs and fidelity is not None and score is not None:
            self.rungs.setdefault(trial_id, []).append((fidelity, score))

    def see_fidelity(self, result: Mapping[str, Any] | None) -> None:
        fidelity = finite_number((result or {}).get(FIDELITY))
        if fidelity is not None and (self.max_fidelity_seen or -math.inf) < fidelity:
            self.max_fidelity_seen = fidelity

    def end(
        self, trial_id: str
    ) -> tuple[PeftConfiguration | None, dict[str, float | None] | None, list[tuple[float, float]]]:
        """Take a trial out of the running ones: its configuration (``None`` if it was not
        running), its last result and its rungs."""
        return (
            self.pending.pop(trial_id, None),
            self.last_results.pop(trial_id, None),
            self.rungs.pop(trial_id, []),
        )

    def add(self, record: TrialRecord, rungs: Sequence[tuple[float, float]] = ()) -> TrialRecord:
        """Record a finished trial, with its earlier rungs when it ran (``keep_rungs``)."""
        if rungs and record.status != FAILED and record.fidelity:
            record = dataclasses.replace(record, earlier=thin_rungs(list(rungs), record.fidelity))
        self.records.append(record)
        return record

    def remove(self, record: TrialRecord) -> None:
        """Drop a record (a failed trial that a retry replaces)."""
        self.records.remove(record)

    def reclassify(self, max_t: float | None, min_fidelity: float | None) -> None:
        """Without a known target, mark as stopped early the completed trials that ended
        below the largest fidelity seen (:func:`~.records.below_largest_fidelity`)."""
        if max_t is None and self.max_fidelity_seen is not None:
            self.records = below_largest_fidelity(
                self.records, self.max_fidelity_seen, min_fidelity
            )

    # -- queries -------------------------------------------------------------
    def with_status(self, status: str) -> list[TrialRecord]:
        """The finished trials of ``status``."""
        return with_status(self.records, status)

    @property
    def completed(self) -> list[TrialRecord]:
        return self.with_status(COMPLETED)

    @property
    def early_stopped(self) -> list[TrialRecord]:
        return self.with_status(EARLY_STOPPED)

    @property
    def failed(self) -> list[TrialRecord]:
        return self.with_status(FAILED)

    def failed_record(self, trial_id: str) -> TrialRecord | None:
        return next(
            (r for r in self.records if r.trial_id == trial_id and r.status == FAILED), None
        )

    def default_target(self, max_t: float | None) -> float | None:
        """The target fidelity of results that report none: ``max_t``, else the largest seen."""
        return max_t if max_t is not None else self.max_fidelity_seen

    def snapshot(
        self, *, max_t: float | None, mode: str, reference: tuple[float, float]
    ) -> Snapshot:
        """An immutable copy of the trials, for a proposer."""
        return Snapshot(
            records=tuple(self.records),
            pending=tuple(self.pending.items()),
            seen=frozenset(self.seen),
            num_suggested=self.num_suggested,
            default_target=self.default_target(max_t),
            mode=mode,
            reference=reference,
        )

    # -- JSON ----------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The ledger's keys of the searcher state (:mod:`.state`)."""
        return {
            "num_suggested": self.num_suggested,
            "pending": {tid: c.to_dict() for tid, c in self.pending.items()},
            "last_results": self.last_results,
            "records": [r.to_dict() for r in self.records],
            "max_fidelity_seen": self.max_fidelity_seen,
            "reported": {tid: [list(pair) for pair in pairs] for tid, pairs in self.rungs.items()},
        }

    def load_json(self, state: Mapping[str, Any]) -> None:
        """Replace the ledger by :meth:`to_json`'s output (keys added later may be absent)."""
        self.num_suggested = int(state["num_suggested"])
        self.pending = {tid: PeftConfiguration.from_dict(c) for tid, c in state["pending"].items()}
        self.last_results = {tid: dict(r) for tid, r in state["last_results"].items()}
        self.records = [TrialRecord.from_dict(r) for r in state["records"]]
        self.max_fidelity_seen = state.get("max_fidelity_seen")
        self.rungs = {
            tid: [(float(f), float(v)) for f, v in pairs]
            for tid, pairs in (state.get("reported") or {}).items()
        }
        self.seen = {c.model_key() for c in self.pending.values()}
        self.seen.update(r.config.model_key() for r in self.records)
