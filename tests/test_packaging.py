"""The built wheel ships one import namespace (STYLE.md point 2)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_holds_one_top_level_package(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("autopeft_ray-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"autopeft_ray"}
    assert "autopeft_ray/searchers/__init__.py" in names
    assert "autopeft_ray/trainables/__init__.py" in names
    assert "autopeft_ray/py.typed" in names
    # Every source file ships (pyproject lists the packages by hand).
    sources = {
        f"autopeft_ray/{p.relative_to(ROOT / 'autopeft_ray').as_posix()}"
        for p in (ROOT / "autopeft_ray").rglob("*.py")
    }
    for folder in ("searchers", "trainables"):
        sources |= {
            f"autopeft_ray/{folder}/{p.relative_to(ROOT / folder).as_posix()}"
            for p in (ROOT / folder).rglob("*.py")
        }
    assert sources <= set(names), sorted(sources - set(names))
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "autopeft-ray = autopeft_ray.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    )
