"""BoTorch's fused qLogNEHVI kernel is built with the environment's ninja, whatever PATH says,
into a folder of its own environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

LOAD = """
from autopeft_ray.searchers.surrogate import load_fused_kernel
load_fused_kernel()
"""
#: The Ax-backed searcher's first model step: Ax builds qLogNEHVI itself.
AX_STEP = """
from autopeft_ray.searchers import AxPEFTSearcher
from autopeft_ray.space import SearchSpace
from autopeft_ray.testing.synthetic import SyntheticPeftProblem
space = SearchSpace(num_layers=2, hidden_size=16)
problem = SyntheticPeftProblem(space, seed=0)
searcher = AxPEFTSearcher(space, problem.cost, num_initial=3, surrogate="saas-map", seed=0)
for i in range(4):
    config = searcher.suggest(str(i))
    searcher.on_trial_complete(str(i), problem.evaluate_trial_config(config))
assert searcher.timings and searcher.timings[-1]["fallback"] is None, searcher.timings
"""
REPORT = """
import os
from botorch.acquisition.multi_objective import logei
from autopeft_ray.searchers.surrogate.acquisition import kernel_build_dir
print("loaded" if logei._C is not None else "fallback")
print(os.path.dirname(logei._C.__file__).startswith(kernel_build_dir() + os.sep))
print(os.environ.get("TORCH_EXTENSIONS_DIR"))
"""


@pytest.mark.slow
@pytest.mark.parametrize("script", [LOAD, AX_STEP], ids=["autopeft", "ax"])
def test_kernel_loads_with_the_environments_ninja_not_the_first_on_path(tmp_path, script):
    if not (Path(sys.executable).parent / "ninja").exists():
        pytest.skip("no ninja installed next to this interpreter")
    marker = tmp_path / "called"
    fake = tmp_path / "bin" / "ninja"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = subprocess.run(
        [sys.executable, "-c", script + REPORT],
        env=env,
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    # Built into this environment's own folder (the variable set for the build only).
    assert out.stdout.split() == ["loaded", "True", "None"], out.stderr
    assert not marker.exists(), "the first ninja on PATH was used"


def test_each_environment_builds_the_kernel_in_a_folder_of_its_own(monkeypatch):
    from autopeft_ray.searchers.surrogate.acquisition import KERNEL_BUILD_ROOT, kernel_build_dir

    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    here = kernel_build_dir()
    assert here.startswith(os.path.expanduser(KERNEL_BUILD_ROOT) + os.sep)
    monkeypatch.setattr(sys, "prefix", "/elsewhere/venv")
    assert kernel_build_dir() != here
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", "/my/extensions")  # the user's choice wins
    assert kernel_build_dir() == "/my/extensions"
