"""Model-based suggestions computed off Tune's event loop, in a background thread.

Tune calls ``suggest`` and ``on_trial_complete`` on its single-threaded event
loop: while a searcher fits NUTS there (a minute at 100 observations), no
result is processed, no checkpoint is written and no free GPU gets a trial.
With ``background=True``, :class:`~.autopeft.AutoPEFTSearcher` does its
fitting and acquisition in a daemon thread instead:

- The worker works on a *snapshot* of the searcher (its results, running
  trials, seen configurations and seed), never on the live searcher, so the
  event loop and the worker share nothing but a lock-protected hand-over.
- From one snapshot (one fit) it computes a queue of ``queue_size``
  candidates, one after another, each with the running trials *and the
  candidates queued before it* as pending points, so the queue holds
  different configurations. With the paper's NUTS a fit costs a third to
  all of one candidate's acquisition (BENCHMARKS.md), so a queue from one
  fit gives more candidates per minute than a refit for each.
- ``suggest`` takes the first queued candidate not seen since (``None`` while
  none is ready: Tune asks again; a random configuration instead with
  ``fill_with_random``) and asks for a refill. ``on_trial_complete`` only
  records the result and asks for a fresh snapshot: the worker starts it when
  its current queue is computed; until the fresh queue is ready, the older
  candidates still serve, so a free slot does not wait for a refit.
- A model step that raises is logged and replaced by a random candidate, as
  in the foreground. A worker thread that dies (an unexpected error) is
  restarted, with a warning, on the next ``suggest``, which meanwhile
  returns a random configuration, so the search goes on.
- Nothing here is state: save/restore and ``--resume`` write and read what
  they always did; queued candidates are recomputed after a restore.

Reproducibility: each candidate is a deterministic function of its snapshot
(seed, results, pending), and the initial design is drawn on the event loop
as before. *Which* snapshot a candidate came from depends on when results
arrived and how long fits took, so two runs with the same seed may differ
after the initial design. ``background=False`` (the default) keeps the
foreground's guarantee: the same seed and results give the same suggestions.
"""

from __future__ import annotations

import atexit
import copy
import logging
import random
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from autopeft_ray.space import PeftConfiguration

logger = logging.getLogger(__name__)

#: Prefix of the trial ids that stand for queued candidates in a snapshot.
QUEUED = "queued-"
#: How long the interpreter's exit waits for a worker to finish its current candidate.
EXIT_WAIT_S = 300.0
_WORKERS: weakref.WeakSet[BackgroundWorker] = weakref.WeakSet()


@atexit.register
def _stop_workers() -> None:
    """Let every worker finish its candidate before the interpreter tears down.

    A daemon thread still inside a torch call while the interpreter finalises
    aborts the process ("terminate called without an active exception", exit
    134); stopping and joining the workers first ends the process cleanly.
    """
    workers = list(_WORKERS)
    for worker in workers:
        worker.close()
    for worker in workers:
        worker.join(EXIT_WAIT_S)


@dataclass
class Candidate:
    """A configuration the worker proposed, with what its computation produced."""

    config: PeftConfiguration
    #: The data version of the snapshot it was computed from.
    version: int
    timings: list[dict[str, Any]] = field(default_factory=list)
    warnings: dict[str, int] = field(default_factory=dict)
    caches: dict[str, Any] = field(default_factory=dict)


Job = Callable[[], Iterator[Candidate]]


class BackgroundWorker:
    """One daemon thread running the latest submitted job, and the queue it fills.

    A job is a generator function that yields candidates one by one; a job
    submitted meanwhile starts when it ends. The queue is replaced by the
    first candidate of a newer job and extended by the later ones.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._next: tuple[int, Job] | None = None
        self._running: int | None = None
        self._ready: list[Candidate] = []
        self._stop = False
        self._thread: threading.Thread | None = None
        #: Threads that died and were replaced.
        self.restarts = 0
        _WORKERS.add(self)

    # -- the event loop's side -----------------------------------------------
    def submit(self, version: int, job: Job) -> None:
        """Run ``job`` next (a job submitted before and not yet started is dropped)."""
        with self._wake:
            self._next = (version, job)
            self._wake.notify()
        self._ensure_thread()

    def take(self, usable: Callable[[PeftConfiguration], bool]) -> Candidate | None:
        """The first queued candidate that is still ``usable``, removed from the queue."""
        with self._lock:
            while self._ready:
                candidate = self._ready.pop(0)
                if usable(candidate.config):
                    return candidate
        return None

    @property
    def queued(self) -> int:
        with self._lock:
            return len(self._ready)

    @property
    def latest_version(self) -> int | None:
        """The data version of the job running or waiting, or of the queue (None: none)."""
        with self._lock:
            if self._next is not None:
                return self._next[0]
            if self._running is not None:
                return self._running
            return max((c.version for c in self._ready), default=None)

    @property
    def idle(self) -> bool:
        with self._lock:
            return self._next is None and self._running is None

    def died(self) -> bool:
        """True if the thread ended without being stopped (an unexpected error)."""
        return self._thread is not None and not self._thread.is_alive() and not self._stop

    def restart(self) -> None:
        """A new thread after one died (its ``finally`` already cleared ``_running``)."""
        self.restarts += 1
        self._thread = None
        self._ensure_thread()

    def close(self) -> None:
        """Stop after the current candidate; queued candidates are dropped."""
        with self._wake:
            self._stop = True
            self._next = None
            self._ready.clear()
            self._wake.notify()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end (after :meth:`close`); False if it still runs."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("The background suggestion worker is still running.")
                return False
        return True

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    # -- the worker's side ---------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._wake:
                while self._next is None and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                assert self._next is not None
                version, job = self._next
                self._next, self._running = None, version
            try:
                for position, candidate in enumerate(job()):
                    with self._lock:
                        if self._stop:
                            return
                        if position == 0:
                            self._ready = []  # a fresher queue replaces the older one
                        self._ready.append(candidate)
            except Exception:
                # The thread ends here; the next suggest sees it dead and restarts it.
                logger.exception("The background suggestion worker failed.")
                return
            finally:
                with self._lock:
                    self._running = None


class BackgroundProposals:
    """Mixin of :class:`~.autopeft.AutoPEFTSearcher`: its model-based step in a worker.

    The host provides ``_model_based_or_random()`` (one candidate from its own
    data), ``seed``, ``num_suggested``, ``records``, ``_pending``, ``_seen``,
    ``timings``, ``numerical_warnings`` and the caches named in
    ``_background_caches``.
    """

    background: bool
    queue_size: int
    fill_with_random: bool
    _background: BackgroundWorker | None
    _data_version: int
    _background_caches: tuple[str, ...] = ()
    # What the host searcher has (PeftSearcherBase and AutoPEFTSearcher).
    seed: int
    num_suggested: int
    records: list[Any]
    timings: list[dict[str, Any]]
    numerical_warnings: dict[str, int]
    _pending: dict[str, PeftConfiguration]
    _seen: set[PeftConfiguration]
    _rng: random.Random
    _random_unseen: Callable[[], PeftConfiguration | None]

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        super().on_trial_complete(trial_id, result, error)  # type: ignore[misc]
        if self.background:
            self._new_results()

    def _background_proposal(self) -> PeftConfiguration | None:
        """A queued candidate (``None``: none ready yet), and a refill if one is due."""
        worker = self._background_worker()
        if worker.died():
            logger.warning(
                "The background suggestion worker died (restart %d); restarting it, and "
                "sampling this configuration at random.",
                worker.restarts + 1,
            )
            worker.restart()
            self._refill(worker)
            return self._random_unseen()
        candidate = worker.take(lambda config: config.canonical() not in self._seen)
        if candidate is not None:
            self._merge(candidate)
        self._refill(worker)
        if candidate is not None:
            return candidate.config
        if self.fill_with_random:
            entry = {"n_observations": len(self.records), "fallback": "none ready"}
            self.timings.append({**entry, "background": True})
            return self._random_unseen()
        return None

    def _new_results(self) -> None:
        """Results changed: the next job fits them (called by ``on_trial_complete``)."""
        self._data_version += 1
        if self._background is not None:
            self._refill(self._background)

    def _background_worker(self) -> BackgroundWorker:
        if self._background is None:
            self._background = BackgroundWorker(f"{type(self).__name__}-suggestions")
        return self._background

    def _refill(self, worker: BackgroundWorker) -> None:
        """Submit a fresh snapshot if the worker's data is older, or its queue short and idle."""
        latest = worker.latest_version
        stale = latest is None or latest < self._data_version
        if stale or (worker.idle and worker.queued < self.queue_size):
            worker.submit(self._data_version, self._snapshot_job())

    def _snapshot_job(self) -> Job:
        snapshot = self._snapshot()
        version, size = self._data_version, self.queue_size

        def job() -> Iterator[Candidate]:
            for position in range(size):
                config = snapshot._model_based_or_random()
                if config is None:
                    return
                timings = [{**entry, "background": True} for entry in snapshot.timings]
                caches = {name: getattr(snapshot, name) for name in self._background_caches}
                yield Candidate(config, version, timings, dict(snapshot.numerical_warnings), caches)
                snapshot.timings.clear()
                snapshot.numerical_warnings.clear()
                # The next candidate treats this one as running.
                snapshot._pending[f"{QUEUED}{position}"] = config
                snapshot._seen.add(config.canonical())
                snapshot.num_suggested += 1

        return job

    def _snapshot(self) -> Any:
        """A copy of this searcher that the worker may change: own containers, own RNG."""
        snapshot = copy.copy(self)  # __getstate__ leaves the caches and the worker out
        for name in self._background_caches:
            setattr(snapshot, name, getattr(self, name))
        snapshot.background, snapshot._background = False, None
        snapshot.records = list(self.records)
        snapshot._pending = dict(self._pending)
        snapshot._seen = set(self._seen)
        snapshot.timings, snapshot.numerical_warnings = [], {}
        snapshot._rng = random.Random(f"{self.seed}-background-{self.num_suggested}")
        return snapshot

    def _merge(self, candidate: Candidate) -> None:
        """Take over what the worker computed for a candidate (on the event loop)."""
        self.timings.extend(candidate.timings)
        for key, count in candidate.warnings.items():
            self.numerical_warnings[key] = self.numerical_warnings.get(key, 0) + count
        for name, value in candidate.caches.items():
            if value is not None:
                setattr(self, name, value)

    def _stop_background(self) -> None:
        if self._background is not None:
            self._background.close()
        self._background = None
