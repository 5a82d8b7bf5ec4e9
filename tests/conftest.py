"""Shared test settings: offline hub, quiet Ray, and one Ray runtime per session."""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# The run-folder key (run/digest.py) from the environment: searches in tests leave the
# user's config dir alone. tests/run/test_digest.py takes it out to test the key file.
os.environ.setdefault("AUTOPEFT_RUN_FOLDER_KEY", "autopeft-ray tests: not a secret")
# Each pytest-xdist worker computes with one thread (torch reads this when imported, and
# the CLI processes that tests start inherit it; Ray trials set their own from the CPUs
# they are granted). Two workers with torch's default, a thread per core, oversubscribe
# 2 cores: the searcher contract tests took 2.1-2.4x as long (BENCHMARKS.md, "Test
# suite time").
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the ``gpu`` tests, saying why, on a machine without a CUDA GPU."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in gpu_tests:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def tmp_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tokenisation cache shared by the tests of one session."""
    path = tmp_path_factory.mktemp("autopeft_cache")
    os.environ["AUTOPEFT_RAY_CACHE"] = str(path)
    return str(path)


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray runtime with 2 CPUs, started once (ray.init costs ~8 s)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_search_args() -> list[str]:
    """CLI flags of the smallest real search: the 200-sentence task, short sequences,
    16 dev examples, one CPU per trial. Tests add the budget and the searcher."""
    return [
        "--task",
        "pang_lee_polarity",
        "--max-length",
        "32",
        "--batch-size",
        "8",
        "--max-eval-examples",
        "16",
        "--cpus-per-trial",
        "1",
    ]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny BERT and RoBERTa checkpoints by family: 6 layers of width 32, random weights,
    saved with the offline model's tokenizer (``autopeft_ray.testing.tiny``)."""
    from autopeft_ray.testing.tiny import ENCODER_FAMILIES, tiny_checkpoint

    root = tmp_path_factory.mktemp("tiny-models")
    return {f: tiny_checkpoint(root / f, f, num_layers=6, hidden_size=32) for f in ENCODER_FAMILIES}


@pytest.fixture(scope="session")
def tiny_decoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny GPT-2, Llama and Mistral causal LMs by family: 2 layers of width 64 (Llama and
    Mistral with 2 key/value heads of 4), random weights, saved with the offline model's
    tokenizer as a stand-in (``autopeft_ray.testing.tiny``)."""
    from autopeft_ray.space.support import DECODER_FAMILIES
    from autopeft_ray.testing.tiny import tiny_checkpoint

    root = tmp_path_factory.mktemp("tiny-decoders")
    return {f: tiny_checkpoint(root / f, f, num_layers=2, hidden_size=64) for f in DECODER_FAMILIES}


#: A test's call may take this long (on 2 cores, beside a second xdist worker) unless
#: it is marked ``long`` with the reason it must.
LONG_TEST_S = 60.0
_unmarked_long: list[tuple[str, float]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Note each test over :data:`LONG_TEST_S` that is not marked ``long``."""
    if report.when == "call" and report.duration > LONG_TEST_S and "long" not in report.keywords:
        _unmarked_long.append((report.nodeid, report.duration))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """List the tests over a minute without a ``long`` marker (a report: it fails nothing)."""
    if not _unmarked_long:
        return
    terminalreporter.section(f"tests over {LONG_TEST_S:.0f} s not marked long")
    for nodeid, seconds in sorted(_unmarked_long, key=lambda t: -t[1]):
        terminalreporter.write_line(f"{seconds:7.1f} s  {nodeid}")
    terminalreporter.write_line(
        "Make them faster, or mark them @pytest.mark.long(reason=...) with why they must "
        "take that long."
    )
