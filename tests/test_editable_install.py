"""A user's mypy sees the package after the editable install that scripts/setup.sh makes.

The install is rebuilt from a copy of the package (setuptools' own PEP 660 hook, with
the ``--config-settings`` that setup.sh passes to pip) into a bare virtual environment
under ``tmp_path``; mypy then checks a user's file against it, as ``.venv/bin/mypy`` on
a user's code does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

USER_CODE = """\
from autopeft_ray.objectives import ParamCost
from autopeft_ray.searchers import AutoPEFTSearcher
from autopeft_ray.space import SearchSpace


def build(space: SearchSpace, cost: ParamCost) -> AutoPEFTSearcher:
    return AutoPEFTSearcher(space, cost_fn=cost, num_initial=4)


wrong: str = build  # a real type, so mypy must refuse this line
"""


def _setup_config_settings() -> dict[str, str]:
    """The ``--config-settings`` of setup.sh's editable install of the package."""
    script = (ROOT / "scripts" / "setup.sh").read_text()
    (line,) = [line for line in script.splitlines() if "install" in line and " -e " in line]
    return dict(
        setting.split("=", 1) for setting in re.findall(r"--config-settings[= ](\S+)", line)
    )


def _editable_install(tmp_path: Path) -> tuple[Path, Path]:
    """``(project copy, python of a bare venv with it installed editable)``."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    for folder in ("autopeft_ray", "searchers", "trainables"):
        shutil.copytree(
            ROOT / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    wheels = tmp_path / "wheels"
    build = (
        "import sys, setuptools.build_meta as b; "
        f"b.build_editable(sys.argv[1], config_settings={_setup_config_settings()!r})"
    )
    subprocess.run(
        [sys.executable, "-c", build, str(wheels)],
        cwd=project,
        check=True,
        capture_output=True,
    )
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=False)
    (site,) = environment.glob("lib/python3*/site-packages")
    (wheel,) = wheels.glob("*.whl")
    zipfile.ZipFile(wheel).extractall(site)
    return project, environment / "bin" / "python"


def test_mypy_sees_the_package_after_the_editable_install(tmp_path: Path) -> None:
    project, python = _editable_install(tmp_path)
    user = tmp_path / "user"
    user.mkdir()
    (user / "user_search.py").write_text(USER_CODE)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--python-executable",
            str(python),
            "--config-file",
            "",
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            "user_search.py",
        ],
        cwd=user,
        capture_output=True,
        text=True,
    )
    output = done.stdout + done.stderr
    assert "import-not-found" not in output and "import-untyped" not in output, output
    # Only the deliberate error: the searcher's type is known, not Any.
    assert 'variable has type "str"' in output and "Found 1 error" in output, output

    # The same install imports the checkout's modules, from outside it and inside it
    # (where the checkout's folder comes first on sys.path), files added since included.
    (project / "autopeft_ray" / "added_later.py").write_text("ADDED = True\n")
    probe = (
        "import importlib.util, autopeft_ray.added_later as m; "
        "print(m.__file__); print(importlib.util.find_spec('autopeft_ray.searchers').origin)"
    )
    for cwd in (user, project):
        found = subprocess.run(
            [str(python), "-c", probe], cwd=cwd, capture_output=True, text=True, check=True
        )
        assert found.stdout.split() == [
            str(project / "autopeft_ray" / "added_later.py"),
            str(project / "searchers" / "__init__.py"),
        ]
