"""Keyed digests of what ``--resume`` unpickles, so that a planted or changed pickle is refused.

``Tuner.restore`` reads the files at the top of a run folder's ``tune/``: it
unpickles ``tuner.pkl``, the searcher's and the callbacks' ``*.pkl`` states and
the newest ``experiment_state-*.json`` (each trial is cloudpickled inside it);
Ray Tune downloads every ``*.json`` and ``*.pkl`` there before it restores. A
search records an HMAC-SHA256 of each of those files in ``tune-digest.json``
(:data:`DIGEST`), at the top of the run folder, and ``--resume`` checks them
(:func:`check_digest`): a file changed or added since is refused, naming it.

The key never enters the run folder. It is ``AUTOPEFT_RUN_FOLDER_KEY`` when set
(a secret shared by the machines that resume a folder in a bucket, or on a
cluster), else the file ``$XDG_CONFIG_HOME/autopeft-ray/run-folder.key``
(``~/.config/...``), made on first use with mode 0600.

When the digest is recorded:

* when the search starts (the files ``--resume`` just checked) and once its
  ``Tuner`` is built (``tuner.pkl``);
* at every snapshot of Tune's state (:class:`StateDigest`, a Tune callback):
  the digest of the driver's own copy, the one Ray then copies into ``tune/``,
  keeping the last :data:`VERSIONS` versions of each file, so that a ``kill
  -9`` between the two leaves files the digest knows;
* when the search ends, after Ctrl-C too, or fails.

What it does not cover: files changed while a search runs in the folder, trial
checkpoints (they load with ``torch.load(weights_only=True)``, which runs no
code), and a run folder of an older version, which has no digest (resumed with
a warning, as before; the search then records one).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Callback

from autopeft_ray.exceptions import ConfigurationError, RunFolderError

from .folder import RunFolder

logger = logging.getLogger(__name__)

#: The digest file, at the top of the run folder.
DIGEST = RunFolder.TUNE_DIGEST
#: Environment variable holding the key (else the key file).
KEY_VARIABLE = "AUTOPEFT_RUN_FOLDER_KEY"
#: Shortest key accepted.
MIN_KEY_CHARACTERS = 16
#: Versions of each file the digest keeps (Ray copies Tune's state into ``tune/`` behind).
VERSIONS = 4
#: The files of ``tune/`` that Tune downloads and restores from (its own filter).
SUFFIXES = (".json", ".pkl")
#: Longer than a file system's time granularity (a file this recent may change unseen).
_TICK_NS = 100_000_000
_FIX = "pass --trust-run-folder if you trust whoever wrote it (resuming runs its pickles)"


def key_file() -> Path:
    """``$XDG_CONFIG_HOME/autopeft-ray/run-folder.key`` (``~/.config/...`` by default)."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base).expanduser() / "autopeft-ray" / "run-folder.key"


@dataclass(frozen=True)
class Key:
    """The secret that signs a run folder's digest, and where it came from (for messages)."""

    secret: bytes = field(repr=False)
    source: str

    @property
    def id(self) -> str:
        """A name of the key that gives nothing of it away (kept in the digest)."""
        return hmac.new(self.secret, b"autopeft-ray run folder key", hashlib.sha256).hexdigest()[
            :16
        ]

    def mac(self, name: str, data: bytes) -> str:
        """HMAC-SHA256 of a file's name and content."""
        return hmac.new(self.secret, name.encode() + b"\0" + data, hashlib.sha256).hexdigest()


def load_key(create: bool = True) -> Key:
    """The run-folder key: ``AUTOPEFT_RUN_FOLDER_KEY``, else the key file (made if missing).

    Raises:
        ConfigurationError: a key shorter than :data:`MIN_KEY_CHARACTERS`, or a key file
            that cannot be read or made.
    """
    value = os.environ.get(KEY_VARIABLE)
    if value:
        if len(value) < MIN_KEY_CHARACTERS:
            raise ConfigurationError(
                f"`{KEY_VARIABLE}` should be a secret of at least {MIN_KEY_CHARACTERS} "
                f"characters, got one of {len(value)}. Make one with `python -c 'import "
                f"secrets; print(secrets.token_hex(32))'`."
            )
        return Key(value.encode(), KEY_VARIABLE)
    path = key_file()
    try:
        secret = path.read_bytes().strip()
    except FileNotFoundError:
        if not create:
            raise
        secret = _create_key(path)
    except OSError as exc:
        raise ConfigurationError(
            f"The run-folder key {path} cannot be read ({exc.strerror}). Fix its permissions, "
            f"or set {KEY_VARIABLE}."
        ) from None
    if len(secret) < MIN_KEY_CHARACTERS:
        raise ConfigurationError(
            f"The run-folder key {path} holds fewer than {MIN_KEY_CHARACTERS} characters. "
            f"Delete it (a new one is made; folders digested with the old one then need "
            f"--trust-run-folder once), or set {KEY_VARIABLE}."
        )
    return Key(secret, str(path))


def _create_key(path: Path) -> bytes:
    secret = secrets.token_hex(32).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes().strip()
    except OSError as exc:
        raise ConfigurationError(
            f"The run-folder key {path} cannot be made ({exc.strerror}). Set {KEY_VARIABLE} "
            f"to a secret instead."
        ) from None
    with os.fdopen(fd, "wb") as f:
        f.write(secret + b"\n")
    return secret


def is_state_file(name: str) -> bool:
    """A file of ``tune/`` that Tune restores from (``*.json``, ``*.pkl``)."""
    return name.endswith(SUFFIXES)


class Digest:
    """The digest of a run folder's Tune state: per file name, the MACs of its versions."""

    def __init__(self, key: Key, files: dict[str, list[str]] | None = None) -> None:
        self.key = key
        self.files: dict[str, list[str]] = files or {}

    @classmethod
    def read(cls, run: RunFolder, key: Key) -> Digest:
        """The run folder's digest if it was made with ``key``, else an empty one."""
        try:
            data = _read(run)
        except RunFolderError:  # recorded only once checked or trusted: start it again
            data = None
        if data is None or data["key"] != key.id:
            return cls(key)
        return cls(key, {name: list(macs) for name, macs in data["files"].items()})

    def add(self, name: str, data: bytes) -> None:
        """Record a version of a file this search wrote (the newest first)."""
        mac = self.key.mac(name, data)
        versions = [mac, *(m for m in self.files.get(name, []) if m != mac)]
        self.files[name] = versions[:VERSIONS]

    def write(self, run: RunFolder) -> None:
        document = {
            "algorithm": "HMAC-SHA256",
            "key": self.key.id,
            "key_source": self.key.source,
            "files": self.files,
        }
        run.location.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", DIGEST)


def _read(run: RunFolder) -> dict[str, Any] | None:
    """The digest file's content, ``None`` when there is none; ``RunFolderError`` if damaged."""
    if not run.location.is_file(DIGEST):
        return None
    where = run.location.uri(DIGEST)
    try:
        data = json.loads(run.location.read_text(DIGEST))
        files = data["files"]
        if not (
            isinstance(data["key"], str)
            and isinstance(files, dict)
            and all(
                isinstance(m, list) and all(isinstance(x, str) for x in m) for m in files.values()
            )
        ):
            raise ValueError("not a digest")
    except (ValueError, TypeError, KeyError) as exc:
        raise RunFolderError(
            f"{where} is damaged ({type(exc).__name__}: {exc}); it holds the digest of the "
            f"files --resume unpickles, so the folder is not resumed: {_FIX}."
        ) from None
    return dict(data)


def state_files(run: RunFolder) -> Iterable[tuple[str, bytes]]:
    """Name and content of each file of ``tune/`` that Tune restores from."""
    for name in run.location.list_files(RunFolder.TUNE):
        if is_state_file(name):
            yield name, run.location.read_bytes(RunFolder.TUNE, name)


def check_digest(run: RunFolder) -> None:
    """Before ``--resume``: refuse a file of Tune's state changed or added since the search
    recorded it (exit 2 from the CLI, naming it). A folder without a digest (an older
    version's) resumes with a warning.

    Raises:
        ConfigurationError: a changed or added file, a digest made with another key.
        RunFolderError: a damaged digest.
    """
    shown = run.location.uri()
    data = _read(run)
    if data is None:
        if any(is_state_file(n) for n in run.location.list_files(RunFolder.TUNE)):
            logger.warning(
                "%s has no %s (a run folder of an older autopeft-ray, or it was deleted): the "
                "files --resume unpickles from tune/ are not checked. Resume only your own run "
                "folders; this search records a digest from now on.",
                shown,
                DIGEST,
            )
        return
    key = load_key()
    if data["key"] != key.id:
        raise ConfigurationError(
            f"`output` {shown} cannot be resumed safely: its {DIGEST} was recorded with "
            f"another key than {key.source}, so its files cannot be checked. Set "
            f"{KEY_VARIABLE} to the key the search used (or copy its key file to "
            f"{key_file()}), or {_FIX}."
        )
    for name, content in state_files(run):
        recorded = data["files"].get(name)
        if recorded is None or key.mac(name, content) not in recorded:
            what = "was added" if recorded is None else "changed"
            raise ConfigurationError(
                f"`output` {shown} cannot be resumed safely: {run.tune.uri(name)} {what} since "
                f"the search recorded its digest ({DIGEST}), and resuming unpickles it. If "
                f"the search was killed (kill -9) its last state may be unrecorded: then, or "
                f"if you know who changed it, {_FIX}."
            )


def record_digest(run: RunFolder) -> None:
    """Add the files of ``tune/`` as they are now to the digest (never fails a search:
    a key or a folder that cannot be used is a warning)."""
    try:
        digest = Digest.read(run, load_key())
        for name, content in state_files(run):
            digest.add(name, content)
        digest.write(run)
    except (ConfigurationError, OSError) as exc:
        logger.warning(
            "The digest of %s's Tune state was not recorded (%s); --resume will not check it.",
            run.location.uri(),
            exc,
        )


class StateDigest(Callback):
    """Ray Tune callback: record the digest at each snapshot of Tune's state.

    Tune writes its state to the driver's staging folder, then copies it into
    ``tune/`` in the background; this records the staging copy's files (what
    ``tune/`` is about to hold) as soon as one changes, keeping earlier
    versions (:data:`VERSIONS`). The key is loaded in ``setup`` and never
    pickled: Tune pickles its callbacks into ``tuner.pkl``.

    Args:
        run_folder: the search's run folder.
    """

    def __init__(self, run_folder: RunFolder) -> None:
        self.run = run_folder
        self._digest: Digest | None = None
        self._seen: tuple[Any, ...] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_digest": None, "_seen": None}

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        try:
            self._digest = Digest.read(self.run, load_key())
        except (ConfigurationError, OSError) as exc:
            self._digest = None
            logger.warning("The digest of the Tune state is not recorded while it runs: %s", exc)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self._record(trials)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self._record(trials)

    def _record(self, trials: list[Any]) -> None:
        staging = _staging_folder(trials)
        if self._digest is None or staging is None:
            return
        try:
            now = time.time_ns()
            entries = sorted(
                (e for e in os.scandir(staging) if e.is_file() and is_state_file(e.name)),
                key=lambda e: e.name,
            )
            seen = tuple((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries)
            if seen == self._seen:
                return
            before = {name: macs[:1] for name, macs in self._digest.files.items()}
            for entry in entries:
                self._digest.add(entry.name, Path(entry.path).read_bytes())
            if any(self._digest.files[e.name][:1] != before.get(e.name) for e in entries):
                self._digest.write(self.run)
            # File times are coarse: a file written again within the same tick keeps its
            # time and size, so a file this recent is read again at the next step.
            recent = any(mtime > now - _TICK_NS for _, _, mtime in seen)
            self._seen = None if recent else seen
        except OSError as exc:  # a file replaced while read: the next step tries again
            logger.debug("Digest of %s not recorded this step: %s", staging, exc)


def _staging_folder(trials: list[Any]) -> str | None:
    """The driver's staging copy of the experiment folder (Ray Tune 2.x), if known."""
    for trial in trials:
        path = getattr(getattr(trial, "storage", None), "experiment_driver_staging_path", None)
        if path and os.path.isdir(path):
            return str(path)
    return None
