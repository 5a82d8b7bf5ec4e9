"""A tiny real search prints no line a user would mistake for an error.

Run as a user runs it (a subprocess, so that what C++ libraries write to the
terminal is seen too), with the paper's NUTS fit (JAX) and a model-based step.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

#: Lines that read as errors or warnings to a user: XLA's CPU-feature lines
#: ("E1130 ... cpu_aot_loader.cc ... SIGILL"), Python warnings, tracebacks.
ALARMING = re.compile(
    r"^E\d{4} |SIGILL|cpu_aot_loader|Traceback|NumericalWarning|UserWarning|FutureWarning"
    r"|RuntimeWarning|InputDataWarning|OptimizationWarning"
)


@pytest.mark.slow
def test_a_tiny_search_prints_no_alarming_line(tmp_path, tiny_search_args):
    env = {**os.environ, "AUTOPEFT_RAY_CACHE": str(tmp_path / "cache")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    command = [
        sys.executable,
        "-m",
        "autopeft_ray.cli",
        "search",
        *tiny_search_args,
        "--max-steps",
        "2",
        "--initial",
        "2",
        "--model-based",
        "2",
        "--nuts",
        "8",
        "5",
        "1",
        "--concurrency",
        "2",
        "--output",
        str(tmp_path / "run"),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    alarming = [line[:200] for line in output.splitlines() if ALARMING.search(line)]
    assert not alarming, alarming
    assert "Pareto front" in done.stdout
