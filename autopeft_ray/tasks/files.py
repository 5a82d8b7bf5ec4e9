"""Your data files: which file is which split, and reading one as a table."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autopeft_ray.exceptions import TaskError, invalid_value, shorten, show_values

SPLITS = ("train", "validation", "test")
FILE_TYPES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
_SPLIT_ALIASES = {"train": "train", "validation": "validation", "dev": "validation", "test": "test"}


def read_table(path: Path) -> Any:
    import pandas as pd

    suffix = path.suffix.lower()
    # Everything is read as text from csv/tsv so that a sentence like "NA" or
    # "1" stays a string; labels are converted afterwards, with checks.
    if suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    if suffix == ".tsv":
        return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)
    if suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as handle:
            first = handle.read(64).lstrip()[:1]
        lines = suffix == ".jsonl" or first != "["
        return pd.read_json(path, lines=lines, dtype=False)
    return pd.read_parquet(path)


def path_exists(path: Path, kind: str = "any") -> bool:
    """``path.exists()`` / ``is_dir()`` / ``is_file()`` (``kind`` "any", "dir", "file")
    that answers False for paths the OS refuses (too long, an embedded NUL byte)
    instead of raising."""
    try:
        if kind == "dir":
            return path.is_dir()
        return path.is_file() if kind == "file" else path.exists()
    except (OSError, ValueError):
        return False


def resolve_data_files(
    data_files: Mapping[str, str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    require_validation: bool = True,
) -> dict[str, Path]:
    """Map a folder or a ``{split: path}`` dict to ``{"train"|"validation"|"test": Path}``.

    With ``require_validation=False`` (your own data) a single file is the
    training split and a validation file is optional.

    Raises:
        TaskError: a split name, path or file type is invalid, or train or
            validation is missing.
    """
    files: dict[str, Path] = {}
    if isinstance(data_files, Mapping):
        for key, value in data_files.items():
            split = _SPLIT_ALIASES.get(str(key).lower())
            if split is None:
                raise invalid_value("data_files split", key, valid=SPLITS, cls=TaskError)
            if not isinstance(value, (str, os.PathLike)):
                raise invalid_value(
                    f"data_files[{split!r}]", value, expected="a file path", cls=TaskError
                )
            files[split] = Path(value).expanduser()
    elif (
        not require_validation
        and isinstance(data_files, (str, os.PathLike))
        and path_exists(Path(data_files).expanduser(), "file")
    ):
        files["train"] = Path(data_files).expanduser()  # one file: dev is cut from it
    elif isinstance(data_files, (str, os.PathLike)):
        folder = Path(data_files).expanduser()
        if not path_exists(folder, "dir"):
            raise invalid_value(
                "data_files",
                str(folder),
                expected="a folder holding train.<ext> and validation.<ext> files, or a "
                "{split: path} dict",
                cls=TaskError,
            )
        for path in sorted(folder.iterdir()):
            split = _SPLIT_ALIASES.get(path.stem.lower())
            if split is None or path.suffix.lower() not in FILE_TYPES:
                continue
            if split in files:
                raise TaskError(
                    f"`data_files` folder {str(folder)!r} holds two {split} files: "
                    f"{files[split].name!r} and {path.name!r}. Keep one, or pass a dict."
                )
            files[split] = path
    else:
        raise invalid_value(
            "data_files",
            data_files,
            expected="a folder path or a {split: path} dict",
            cls=TaskError,
        )
    for split, path in files.items():
        if path.suffix.lower() not in FILE_TYPES:
            raise invalid_value(
                f"data_files[{split!r}]",
                str(path),
                expected=f"a file ending in one of {', '.join(FILE_TYPES)}",
                cls=TaskError,
            )
        if not path_exists(path, "file"):
            raise invalid_value(
                f"data_files[{split!r}]", str(path), expected="an existing file", cls=TaskError
            )
    needed = ("train", "validation") if require_validation else ("train",)
    missing = [s for s in needed if s not in files]
    if missing:
        if isinstance(data_files, Mapping):
            listing = sorted(str(k) for k in data_files)
            fix = "Pass {'train': path, 'validation': path} (and optionally 'test')."
        else:
            listing = sorted(p.name for p in Path(data_files).iterdir())
            fix = (
                f"Name them train.<ext> and validation.<ext> (or dev.<ext>), <ext> one of "
                f"{', '.join(FILE_TYPES)}."
            )
        raise TaskError(
            f"`data_files` {shorten(repr(str(data_files)))} has no {' and no '.join(missing)} "
            f"file (found: {show_values(listing)}). {fix}"
        )
    return files
