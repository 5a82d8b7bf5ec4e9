"""The run folder: one object owns every path in it, and every read and write.

A run folder is local or in object storage (``s3://bucket/prefix/name``,
:mod:`.storage`); the layout is the same.

Layout of a run folder (``RunFolder`` names each file once):

* ``search.json``      the search options (what ``--resume``, ``report``,
  ``evaluate`` and ``transfer`` read back);
* ``trials.jsonl``     one line per completed, early-stopped or failed trial,
  appended and flushed as each one ends: it survives a crash;
* ``trials/``          the same in object storage, which cannot append: one
  object per ended trial, written whole (``<trial id>-<time>.json``);
* ``trials.csv``       the same as a table;
* ``pareto.json`` / ``pareto.csv``  the non-dominated configurations;
* ``baselines.json``   baselines trained at the search fidelity, and
  ``baselines/``, Ray Tune's folder for them;
* ``adapters/<n>/``    per Pareto member, the ``adapters`` setup a user loads
  without this project (``adapter_setup.json``, ``configuration.json``);
* ``relevance.json``   which dimensions matter to the score (the SAAS GP's
  inverse lengthscales, :mod:`searchers.relevance`);
* ``ax_experiment.json`` the trials as an Ax experiment (``export-ax``);
* ``report/``          the report (``report.md`` and its figures);
* ``tune/``            Ray Tune's own experiment folder (``Tuner.restore``);
* ``tune-digest.json`` keyed digests (HMAC-SHA256) of the files in ``tune/``
  that ``--resume`` unpickles, checked before it does (:mod:`.digest`).

A trial's status is one of :data:`autopeft_ray.objectives.STATUSES`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from autopeft_ray.config import PRESET_KEY, SearchOptions
from autopeft_ray.exceptions import RunFolderError, invalid_value, shorten

from .records import (
    completed_points,
    keep_latest,
    mark_dominated,
    missing_records,
    pareto_records,
    parse_record,
)
from .storage import Location

logger = logging.getLogger(__name__)
#: Trial objects read at a time from object storage.
READ_THREADS = 16


class RunFolder:
    """A search's run folder (see the module docstring for its layout).

    Args:
        location: the folder, local or a URI (``s3://bucket/prefix/name``,
            :mod:`.storage`); created by the first write.
        filesystem: a ``pyarrow.fs.FileSystem`` in which ``location`` is a
            path, as Ray Tune's ``storage_filesystem``.
        field: what a bad ``location`` is called in the error (``output`` for a search).

    On a local disk ``trials.jsonl`` is appended and flushed as each trial ends.
    Object stores cannot append: there each ended trial is one object,
    ``trials/<trial id>-<time>.json``, written whole. Reading takes both, so a
    run folder copied between the two kinds still reads the same.
    """

    OPTIONS = "search.json"
    TRIALS = "trials.jsonl"
    TRIAL_OBJECTS = "trials"
    TRIALS_CSV = "trials.csv"
    PARETO = "pareto.json"
    PARETO_CSV = "pareto.csv"
    BASELINES = "baselines.json"
    BASELINES_DIR = "baselines"
    ADAPTERS = "adapters"
    RELEVANCE = "relevance.json"
    AX_EXPERIMENT = "ax_experiment.json"
    REPORT = "report"
    TUNE = "tune"
    TUNE_DIGEST = "tune-digest.json"

    def __init__(
        self,
        location: str | os.PathLike[str] | Location,
        filesystem: pafs.FileSystem | None = None,
        *,
        field: str = "run folder",
    ) -> None:
        self.location = Location(location, filesystem, field=field)

    def __repr__(self) -> str:
        return f"RunFolder({self.location.uri()!r})"

    def __str__(self) -> str:
        return self.location.uri()

    @property
    def is_local(self) -> bool:
        return self.location.is_local

    @property
    def name(self) -> str:
        return self.location.name

    @property
    def path(self) -> Path:
        """The folder on this machine's disk (a local run folder only; see ``location``)."""
        return self.location.local_path

    def file(self, name: str) -> Path:
        """The local path of one of the names above (a local run folder only)."""
        return self.path / name

    @property
    def tune_dir(self) -> Path:
        return self.path / self.TUNE

    @property
    def tune(self) -> Location:
        """Ray Tune's experiment folder (``Tuner.restore`` reads it)."""
        return self.location.child(self.TUNE)

    @property
    def report_dir(self) -> Path:
        return self.path / self.REPORT

    def _json(self, name: str) -> Any:
        return json.loads(self.location.read_text(name))

    def _write_json(self, data: Any, *names: str) -> None:
        self.location.write_text(json.dumps(data, indent=2, default=float) + "\n", *names)

    # -- search options --------------------------------------------------------
    def has_options(self) -> bool:
        return self.location.is_file(self.OPTIONS)

    def read_options(self) -> SearchOptions:
        """The options the search was started with (``search.json``)."""
        if not self.has_options():
            raise invalid_value(
                "run folder",
                str(self),
                expected=f"a folder written by `autopeft-ray search` (with {self.OPTIONS})",
            )
        try:
            data = self._json(self.OPTIONS)
            if not isinstance(data, dict):
                raise ValueError(f"a JSON {type(data).__name__}, not an object")
            return SearchOptions.from_dict(data)
        except (ValueError, TypeError, KeyError) as exc:
            raise RunFolderError(
                f"{self.location.uri(self.OPTIONS)} is damaged ({type(exc).__name__}: "
                f"{shorten(str(exc))}); it holds the options of the search. Restore it from a "
                f"copy, or start a new search in another folder."
            ) from None

    def write_options(self, options: SearchOptions) -> None:
        self._write_json(options.to_dict(), self.OPTIONS)

    # -- trial records -----------------------------------------------------------
    def append_record(self, record: Mapping[str, Any]) -> None:
        """Keep one ended trial: appended to ``trials.jsonl`` and flushed to disk on a
        local disk, one whole object under ``trials/`` in object storage."""
        line = json.dumps(record, default=float)
        if not self.is_local:
            stamp = time.time_ns()
            self.location.write_text(
                line + "\n", self.TRIAL_OBJECTS, f"{record['trial_id']}-{stamp}.json"
            )
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with self.file(self.TRIALS).open("a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_records(self) -> list[dict[str, Any]]:
        """All trial records, the latest per trial id (a resumed trial ends once more).

        A last line of ``trials.jsonl`` cut short (a crash in the middle of an
        append) is skipped with a warning; :meth:`repair_records` removes it. Any
        other damaged line or object raises ``RunFolderError`` naming it.
        """
        return self._records()[0]

    def _records(self) -> tuple[list[dict[str, Any]], int | None]:
        """The records, and the byte offset of a cut-short last line (``None`` if none)."""
        latest: dict[str, dict[str, Any]] = {}
        cut = None
        if self.location.is_file(self.TRIALS):
            cut = self._read_lines(self.location.read_bytes(self.TRIALS), latest)
        names = self.location.list_files(self.TRIAL_OBJECTS)
        if names:  # one request per object: many at a time (about 14 ms each on loopback)
            with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(names))) as pool:
                blobs = pool.map(lambda n: self.location.read_bytes(self.TRIAL_OBJECTS, n), names)
                for name, blob in zip(names, blobs, strict=True):
                    where = self.location.uri(self.TRIAL_OBJECTS, name)
                    keep_latest(latest, parse_record(blob, where))
        return list(latest.values()), cut

    def _read_lines(self, data: bytes, latest: dict[str, dict[str, Any]]) -> int | None:
        where = self.location.uri(self.TRIALS)
        lines = data.split(b"\n")
        offset = 0
        for number, raw in enumerate(lines, start=1):
            start, offset = offset, offset + len(raw) + 1
            if not raw.strip():
                continue
            try:
                record = parse_record(raw, f"{where} line {number}")
            except RunFolderError:
                last = all(not rest.strip() for rest in lines[number:])
                if last and not data.endswith(b"\n"):
                    logger.warning(
                        "%s line %d is cut short (a crash while it was written): skipped. "
                        "`autopeft-ray search --resume` removes it.",
                        where,
                        number,
                    )
                    return start
                raise
            keep_latest(latest, record)
        return None

    def rebuild_records(self, trials: Any) -> list[dict[str, Any]]:
        """Append a record for each ended trial of Tune's saved state that has none
        (:func:`.records.missing_records`); return them."""
        rebuilt = missing_records({r["trial_id"] for r in self.read_records()}, trials)
        for record in rebuilt:
            self.append_record(record)
        if rebuilt:
            logger.warning(
                "%s: rebuilt the record of %d ended trial(s) from Ray Tune's saved state: %s.",
                self.location.uri(self.TRIALS),
                len(rebuilt),
                ", ".join(r["trial_id"] for r in rebuilt),
            )
        return rebuilt

    def repair_records(self) -> bool:
        """Remove a cut-short last line of ``trials.jsonl``; True if there was one."""
        cut = self._records()[1]
        if cut is None:
            return False
        data = self.location.read_bytes(self.TRIALS)
        self.location.write_bytes(data[:cut], self.TRIALS)
        logger.warning("%s: removed the cut-short last line.", self.location.uri(self.TRIALS))
        return True

    def completed(self) -> list[dict[str, Any]]:
        """Completed records with both objectives, in the order they ended."""
        return sorted(completed_points(self.read_records()), key=lambda r: r["finished_at"])

    # -- what a finished search writes -------------------------------------------
    def write_tables(self, records: list[dict[str, Any]], pareto: list[dict[str, Any]]) -> None:
        """``trials.csv``, ``pareto.json`` and ``pareto.csv``."""
        self.location.write_text(_csv_text(records), self.TRIALS_CSV)
        self._write_json(pareto, self.PARETO)
        self.location.write_text(_csv_text(pareto), self.PARETO_CSV)

    def read_pareto(self) -> list[dict[str, Any]]:
        """The Pareto set: ``pareto.json``, or rebuilt from the trial records when it is missing."""
        if self.location.exists(self.PARETO):
            return list(self._json(self.PARETO))
        records = self.read_records()
        if not records:
            self.check_exists()
            raise invalid_value(
                "run folder",
                str(self),
                expected=f"a search with ended trials (no {self.PARETO} and no {self.TRIALS})",
            )
        logger.warning(
            "%s is missing: rebuilt from the trial records.", self.location.uri(self.PARETO)
        )
        return self.write_front(records)

    def write_front(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write the tables of ``records`` with their Pareto set, each front member marked
        with the trained baselines that dominate it (``dominated_by``); return the set."""
        pareto = mark_dominated(pareto_records(completed_points(records)), self.read_baselines())
        self.write_tables(records, pareto)
        return pareto

    def check_writable(self, field: str = "output") -> None:
        """Raise unless this user can write the folder: locally nothing is created;
        in object storage a marker object is written and deleted (:mod:`.storage`)."""
        self.location.check_writable(field)

    def untrusted_entries(self, limit: int = 5) -> list[str]:
        """Entries Ray would unpickle on resume that another user could have planted.

        The run folder and everything under ``tune/`` must belong to this user
        and be writable by nobody else: ``Tuner.restore`` unpickles
        ``tune/tuner.pkl`` and the searcher state, so a run folder is code. In
        object storage there are no owners to check: who may write the bucket is
        its access policy (scope it to the cluster's role, cluster/README.md).
        """
        if not self.is_local:
            return []
        found: list[str] = []
        uid = os.getuid()
        candidates = [self.path]
        if self.tune_dir.exists():
            candidates += [self.tune_dir, *self.tune_dir.rglob("*")]
        for path in candidates:
            info = path.lstat()
            if info.st_uid != uid:
                found.append(f"{path} (owned by uid {info.st_uid})")
            elif info.st_mode & 0o022 and not path.is_symlink():
                found.append(f"{path} (writable by group or others)")
            if len(found) >= limit:
                break
        return found

    def check_exists(self) -> None:
        """Raise unless this is a run folder (it holds ``search.json`` or trial records)."""
        if not (
            self.has_options()
            or self.location.exists(self.TRIALS)
            or self.location.list_files(self.TRIAL_OBJECTS)
        ):
            what = "does not exist" if not self.location.exists() else "holds no search"
            raise invalid_value(
                "run folder",
                str(self),
                expected=f"a folder written by `autopeft-ray search` (this one {what})",
                fix="Check the path.",
            )

    def write_adapter_setup(self, rank: int, setup: Mapping[str, Any], configuration: Any) -> None:
        """``adapters/<rank>/``: the ``adapters`` setup and the configuration of a Pareto member."""
        folder = (self.ADAPTERS, f"{rank:02d}")
        self._write_json(setup, *folder, "adapter_setup.json")
        self.location.write_text(configuration.to_json() + "\n", *folder, "configuration.json")

    def write_baselines(self, rows: list[dict[str, Any]]) -> None:
        self._write_json(rows, self.BASELINES)

    def read_baselines(self) -> list[dict[str, Any]]:
        """The baselines trained at the search fidelity (``baselines.json``), if any."""
        return list(self._json(self.BASELINES)) if self.has_baselines() else []

    def has_baselines(self) -> bool:
        return self.location.exists(self.BASELINES)

    def write_relevance(self, relevance: Mapping[str, Any]) -> None:
        self._write_json(relevance, self.RELEVANCE)

    def read_relevance(self) -> dict[str, Any] | None:
        """Which dimensions matter (``relevance.json``), or ``None`` if not fitted."""
        return dict(self._json(self.RELEVANCE)) if self.location.exists(self.RELEVANCE) else None


def _csv_text(records: list[dict[str, Any]]) -> str:
    rows = []
    for r in records:
        row = {"trial_id": r["trial_id"], "status": r["status"]}
        row.update({k: v for k, v in r["configuration"].items() if k != PRESET_KEY})
        if PRESET_KEY in r["configuration"]:
            row[PRESET_KEY] = r["configuration"][PRESET_KEY]
        row.update(r["metrics"])
        rows.append(row)
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns or ["trial_id"])
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()
