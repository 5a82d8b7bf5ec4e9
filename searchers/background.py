"""Model-based suggestions computed off Tune's event loop, in a background thread.

Tune calls ``suggest`` and ``on_trial_complete`` on its single-threaded event
loop: while a searcher fits NUTS there (a minute at 100 observations), no
result is processed, no checkpoint is written and no free GPU gets a trial.
With ``background=True``, :class:`~.autopeft.AutoPEFTSearcher` wraps its
model-based proposer in a :class:`BackgroundProposer`, which runs it in a
daemon thread instead:

- The worker computes from an immutable :class:`~.ledger.Snapshot` of the
  search (its results, running trials, seen configurations), never from the
  live searcher, so the event loop and the worker share nothing but a
  lock-protected hand-over and the proposer's own caches, which only the
  worker uses.
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
import logging
import random
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from autopeft_ray.space import PeftConfiguration

from .ledger import Snapshot
from .proposers import Proposer, RandomProposer, Step

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
    """A step the worker computed, and the data version of the snapshot it came from."""

    step: Step
    version: int

    @property
    def config(self) -> PeftConfiguration:
        assert self.step.config is not None
        return self.step.config


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


class BackgroundProposer:
    """Runs a proposer in a :class:`BackgroundWorker` on snapshots of the search.

    Args:
        proposer: the model-based proposer (:mod:`.proposers`); it must compute from
            its snapshot alone (its caches are its own, used by the worker only).
        random_proposer: the random configurations of ``fill_with_random`` and of a
            restart after the worker died.
        seed: the searcher's seed: each job's random fallbacks draw from a generator
            seeded with it and the job's number of suggestions.
        queue_size: candidates computed from one snapshot.
        fill_with_random: a suggestion that finds no candidate ready gets a random
            configuration instead of ``None``.
        name: the worker thread's name.
    """

    def __init__(
        self,
        proposer: Proposer,
        random_proposer: RandomProposer,
        *,
        seed: int,
        queue_size: int,
        fill_with_random: bool,
        name: str = "autopeft-suggestions",
    ) -> None:
        self.proposer = proposer
        self.random = random_proposer
        self.seed = seed
        self.queue_size = queue_size
        self.fill_with_random = fill_with_random
        self.name = name
        self.worker: BackgroundWorker | None = None
        #: Bumped by :meth:`results_changed`: a job on older data is stale.
        self.data_version = 0

    def propose(self, snapshot: Snapshot, rng: random.Random) -> Step | None:
        """A queued candidate not in ``snapshot.seen`` (``None``: none ready yet), and a
        refill from ``snapshot`` if one is due."""
        worker = self._worker()
        if worker.died():
            logger.warning(
                "The background suggestion worker died (restart %d); restarting it, and "
                "sampling this configuration at random.",
                worker.restarts + 1,
            )
            worker.restart()
            self._refill(worker, snapshot)
            return Step(self.random.draw(snapshot.seen, rng))
        candidate = worker.take(lambda config: config.model_key() not in snapshot.seen)
        self._refill(worker, snapshot)
        if candidate is not None:
            return candidate.step
        if self.fill_with_random:
            entry = {"n_observations": len(snapshot.records), "fallback": "none ready"}
            return Step(self.random.draw(snapshot.seen, rng), [{**entry, "background": True}])
        return None

    def results_changed(self, snapshot: Snapshot) -> None:
        """New results: the next job fits them (called when a trial ends)."""
        self.data_version += 1
        if self.worker is not None:
            self._refill(self.worker, snapshot)

    def close(self) -> None:
        """Stop the worker after its current candidate (its queue is dropped)."""
        if self.worker is not None:
            self.worker.close()
        self.worker = None

    def _worker(self) -> BackgroundWorker:
        if self.worker is None:
            self.worker = BackgroundWorker(self.name)
        return self.worker

    def _refill(self, worker: BackgroundWorker, snapshot: Snapshot) -> None:
        """Submit ``snapshot`` if the worker's data is older, or its queue short and idle."""
        latest = worker.latest_version
        stale = latest is None or latest < self.data_version
        if stale or (worker.idle and worker.queued < self.queue_size):
            worker.submit(self.data_version, self._job(snapshot))

    def _job(self, snapshot: Snapshot) -> Job:
        proposer, version, size = self.proposer, self.data_version, self.queue_size
        rng = random.Random(f"{self.seed}-background-{snapshot.num_suggested}")

        def job() -> Iterator[Candidate]:
            view = snapshot
            for position in range(size):
                step = proposer.propose(view, rng)
                if step.config is None:
                    return
                step.timings = [{**entry, "background": True} for entry in step.timings]
                yield Candidate(step, version)
                # The next candidate treats this one as running.
                view = view.with_running(f"{QUEUED}{position}", step.config)

        return job

    def __getstate__(self) -> dict[str, Any]:
        # The worker (a thread and its queue) is not state: a restored searcher refills.
        return {**self.__dict__, "worker": None}
