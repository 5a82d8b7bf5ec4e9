"""The Ray Tune callbacks of a search: :func:`search_callbacks` returns them.

* :class:`RunLog`: as each trial ends it appends the trial's record to the run
  folder (``trials.jsonl``, flushed: nothing measured is lost on a crash),
  updates the Pareto front, the best score and the hypervolume once, prints one
  status line, and exports the same figures as metrics (:mod:`.metrics`).
* :class:`SearchSummary`: tells the searcher the budget and, when the scheduler
  stops trials, says what is fitted of them at the start; at the end, says why
  no suggestion came from the model, if none did.

``autopeft-ray search`` adds both; a ``Tuner`` of your own gets the same with
``RunConfig(callbacks=search_callbacks(searcher, folder, scheduler=scheduler))``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ray.tune import Callback

from autopeft_ray.objectives import COMPLETED, FAILED, PARAM_FRACTION, SCORE
from autopeft_ray.objectives.pareto import (
    DEFAULT_REFERENCE_POINT,
    ParetoFront,
    reference_point_for,
)

from .folder import RunFolder
from .metrics import (
    BEST_SCORE_METRIC,
    HYPERVOLUME_METRIC,
    SUGGESTION_SECONDS_METRIC,
    TRIALS_FINISHED_METRIC,
    create_metrics,
)
from .records import ended_status, objective_point, trial_record

logger = logging.getLogger(__name__)


class RunLog(Callback):
    """Ray Tune callback: record each ended trial and export the search's progress.

    Every metric carries the tag ``run`` (the run folder), so that searches
    sharing a cluster stay apart. ``autopeft_trials_finished`` (tag ``status``,
    one of ``autopeft_ray.objectives.STATUSES``) counts the trials that ended
    since this driver started: a resumed search counts from 0 again, as any
    Prometheus counter does after a restart. The front starts from the run
    folder's records, so a resumed search keeps it.
    ``autopeft_suggestion_seconds`` observes each entry of ``searcher.timings``
    with a ``total_s`` (the AutoPEFT searcher times its model-based
    suggestions; random ones cost nothing and are not timed).

    Args:
        run_folder: the search's run folder.
        reference_point: ``(score, param_fraction)`` bounding the hypervolume.
        searcher: the searcher whose ``timings`` to export, or ``None``.
        verbose: print a status line as each trial ends.

    Example:
        >>> tune.RunConfig(callbacks=[RunLog(output, (0.0, 0.05), searcher)])
    """

    def __init__(
        self,
        run_folder: str | Path | RunFolder,
        reference_point: tuple[float, float],
        searcher: Any = None,
        verbose: bool = True,
    ) -> None:
        self.run = run_folder if isinstance(run_folder, RunFolder) else RunFolder(run_folder)
        self.reference_point = reference_point
        self.searcher = searcher
        self.verbose = verbose
        self.front = ParetoFront(reference_point)
        self.best_score: float | None = None
        self.hypervolume = 0.0
        self.ended = 0
        self.finished: dict[str, int] = {}
        self.suggestion_seconds: list[float] = []
        self._timings_seen = 0
        self._metrics: dict[str, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into tuner.pkl; metric handles are rebuilt in setup().
        state = self.__dict__.copy()
        state["_metrics"] = None
        return state

    # -- Tune hooks -----------------------------------------------------------
    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        self._metrics = create_metrics(str(self.run))
        records = self.run.read_records()
        self.front = ParetoFront(self.reference_point)
        self.best_score, self.hypervolume, self.ended = None, 0.0, len(records)
        for record in self.run.completed():
            self._add_point(record["trial_id"], *objective_point(record))
        # Tune restores the searcher before setup(): its old timings were exported
        # by the driver that measured them.
        self._timings_seen = len(self._timings())
        self._publish()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        status = ended_status(result, getattr(self.searcher, "max_t", None))
        if status == COMPLETED and SCORE in result and PARAM_FRACTION in result:
            self._add_point(trial.trial_id, result[SCORE], result[PARAM_FRACTION])
        self._ended(trial, status)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        error = getattr(trial, "error_file", None)
        self._ended(trial, FAILED, str(error) if error else None)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self._export_timings()

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self._export_timings()
        counted = getattr(self.searcher, "numerical_warnings", None) or {}
        if counted and self.verbose:
            summary = ", ".join(f"{name} ({n}x)" for name, n in counted.items())
            print(
                f"[autopeft-ray] harmless numerical warnings while fitting, counted "
                f"instead of printed: {summary}",
                flush=True,
            )

    # -- bookkeeping ------------------------------------------------------------
    def _ended(self, trial: Any, status: str, error: str | None = None) -> None:
        self.run.append_record(
            trial_record(trial.trial_id, dict(trial.config), trial.last_result, status, error)
        )
        self.ended += 1
        self.finished[status] = self.finished.get(status, 0) + 1
        if self._metrics is not None:
            self._metrics[TRIALS_FINISHED_METRIC].inc(1, tags={"status": status})
        self._export_timings()
        self._publish()
        if self.verbose:
            best = float("nan") if self.best_score is None else self.best_score
            print(
                f"[autopeft-ray] trials ended: {self.ended} (completed {len(self.front)}), "
                f"best score {best:.4f}, hypervolume {self.hypervolume:.4f}",
                flush=True,
            )

    def _add_point(self, trial_id: str, score: float, fraction: float) -> None:
        self.front.add(float(score), float(fraction), payload=trial_id)
        self.best_score = max(float(score), self.best_score or float("-inf"))
        self.hypervolume = self.front.hypervolume()

    def _timings(self) -> list[dict[str, Any]]:
        return list(getattr(self.searcher, "timings", None) or [])

    def _export_timings(self) -> None:
        timings = self._timings()
        for timing in timings[self._timings_seen :]:
            seconds = timing.get("total_s")
            if seconds is None:  # a step that failed before timing (see AutoPEFTSearcher)
                continue
            self.suggestion_seconds.append(float(seconds))
            if self._metrics is not None:
                self._metrics[SUGGESTION_SECONDS_METRIC].observe(float(seconds))
        self._timings_seen = len(timings)

    def _publish(self) -> None:
        if self._metrics is None:
            return
        self._metrics[HYPERVOLUME_METRIC].set(self.hypervolume)
        if self.best_score is not None:
            self._metrics[BEST_SCORE_METRIC].set(self.best_score)


def stops_trials(scheduler: Any) -> bool:
    """Whether a Tune scheduler may stop trials early (anything but plain FIFO)."""
    from ray.tune.schedulers import FIFOScheduler

    return scheduler is not None and type(scheduler) is not FIFOScheduler


class SearchSummary(Callback):
    """Ray Tune callback: what a user of a searcher should know, at the start and the end.

    At the start it tells the searcher the budget (Tune's ``num_samples``: a
    searcher with the default initial design sizes it from this) and, when
    ``scheduler`` stops trials, lets the searcher say once whether it fits
    them (:meth:`~autopeft_ray.searchers.AutoPEFTSearcher.note_early_stopping`).
    At the end it logs the searcher's ``search_summary()``: why no
    configuration came from the model, with the fix, if none did. A searcher
    without these methods (Ray's own) is left alone.

    Args:
        searcher: the searcher given to ``TuneConfig(search_alg=...)``.
        scheduler: the scheduler given to ``TuneConfig(scheduler=...)``, or ``None``.
    """

    def __init__(self, searcher: Any, scheduler: Any = None) -> None:
        self.searcher = getattr(searcher, "searcher", searcher)  # ConcurrencyLimiter's
        self.stops_trials = stops_trials(scheduler)

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        set_budget = getattr(self.searcher, "set_budget", None)
        if set_budget is not None:
            set_budget(total_num_samples or num_samples)
        note = getattr(self.searcher, "note_early_stopping", None)
        if self.stops_trials and note is not None:
            note()

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        summary = getattr(self.searcher, "search_summary", None)
        message = summary() if summary is not None else None
        if message:
            logger.warning("%s", message)


def search_callbacks(
    searcher: Any,
    run_folder: str | os.PathLike[str] | RunFolder,
    *,
    scheduler: Any = None,
    reference_point: tuple[float, float] | None = None,
    verbose: bool = True,
) -> list[Callback]:
    """The callbacks that make a Python-API search as complete as ``autopeft-ray search``.

    ``[RunLog, SearchSummary]``: each ended trial recorded in ``run_folder``
    (``trials.jsonl``: ``autopeft-ray report`` and
    :func:`autopeft_ray.experiment.insight.export_ax` read it), a status line
    per trial, the dashboard's metrics (:mod:`.metrics`: trials ended,
    hypervolume, best score, suggestion seconds), the budget told to the
    searcher, and what it should say at the start and the end of the search.

    Args:
        searcher: the searcher given to ``TuneConfig(search_alg=...)``.
        run_folder: where the records go (a local folder or a URI; it may be new).
        scheduler: the scheduler given to ``TuneConfig(scheduler=...)``, if any.
        reference_point: ``(score, param_fraction)`` bounding the hypervolume;
            default: the searcher's (score 0.0 and the space's largest
            configuration's fraction), else ``(0.0, 1.0)``.
        verbose: print a status line as each trial ends.

    Returns:
        The callbacks, for ``tune.RunConfig(callbacks=...)``.

    Example:
        >>> searcher = AutoPEFTSearcher(space, cost_fn=cost)
        >>> scheduler = MultiObjectiveASHA(max_t=4, grace_period=2)
        >>> callbacks = search_callbacks(searcher, "runs/mine", scheduler=scheduler)
        >>> tune.RunConfig(callbacks=callbacks)
    """
    inner = getattr(searcher, "searcher", searcher)
    if reference_point is None:
        reference_point = getattr(inner, "reference", None)
    if reference_point is None and getattr(inner, "cost_fn", None) is not None:
        reference_point = reference_point_for(inner.space, inner.cost_fn)
    reference = tuple(reference_point or DEFAULT_REFERENCE_POINT)
    run = run_folder if isinstance(run_folder, RunFolder) else RunFolder(run_folder)
    return [
        RunLog(run, (float(reference[0]), float(reference[1])), inner, verbose=verbose),
        SearchSummary(inner, scheduler),
    ]
