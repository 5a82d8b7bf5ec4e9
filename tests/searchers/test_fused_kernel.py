"""BoTorch's fused qLogNEHVI kernel is built with the environment's ninja, whatever PATH says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
from botorch.acquisition.multi_objective import logei
from autopeft_ray.searchers.surrogate import load_fused_kernel
load_fused_kernel()
print("loaded" if logei._C is not None else "fallback")
"""


@pytest.mark.slow
def test_kernel_loads_with_the_environments_ninja_not_the_first_on_path(tmp_path):
    if not (Path(sys.executable).parent / "ninja").exists():
        pytest.skip("no ninja installed next to this interpreter")
    marker = tmp_path / "called"
    fake = tmp_path / "bin" / "ninja"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert out.stdout.strip() == "loaded", out.stderr
    assert not marker.exists(), "the first ninja on PATH was used"
