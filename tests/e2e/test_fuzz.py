"""Hundreds of generated bad values: each exits 2 (or raises the project's error), nothing else.

The CLI gets one bad flag at a time; Ray must never start (``ray.init`` is
replaced by a failure) and the run folder must not be created. The data
loader gets generated garbage files; it loads them or raises a ``TaskError``.
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autopeft_ray.cli import main
from autopeft_ray.exceptions import AutoPeftError
from autopeft_ray.tasks import TASKS

text = st.text(min_size=0, max_size=40)
not_a_number = text.filter(lambda t: _as_float(t) is None and t.strip().lower() != "none")
huge = st.integers(min_value=200, max_value=5000).map(lambda n: "x" * n)


def _as_float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _floats(bad: st.SearchStrategy[float]) -> st.SearchStrategy[str]:
    return st.one_of(bad.map(repr), st.sampled_from(["nan", "inf", "-inf"]), not_a_number)


def _ints(at_most: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(max_value=at_most).map(str),
        st.integers(min_value=2**31).map(str),  # more than any consumer takes
        st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x)).map(repr),
        not_a_number,
    )


POSITIVE_INTS = ["--batch-size", "--eval-batch-size", "--max-length", "--num-evaluations"]
POSITIVE_INTS += ["--max-steps", "--train-examples", "--max-eval-examples", "--concurrency"]
NON_NEGATIVE_INTS = ["--initial", "--max-failures", "--seed"]
CHOICES = ["--space", "--searcher", "--scheduler", "--surrogate", "--learning-rate-policy"]
CHOICES += ["--baseline"]

#: Output folders that cannot be written: under /proc, with names longer than the file
#: system takes, longer than PATH_MAX, or inside a file.
_paths = st.one_of(
    st.text(min_size=1, max_size=20).map(lambda t: "/proc/autopeft-nope/" + t.replace("/", "_")),
    st.integers(256, 1000).map(lambda n: "/tmp/" + "x" * n),  # a name over NAME_MAX
    st.integers(128, 500).map(lambda n: "/tmp/" + "ü" * n),  # 2 bytes each: over NAME_MAX
    st.integers(5000, 6000).map(lambda n: "/tmp/" + "/".join(["d" * 200] * (n // 200))),
    st.text(min_size=1, max_size=20).map(lambda t: "/etc/hostname/" + t.replace("/", "_")),
)

bad_argument = st.one_of(
    st.tuples(st.sampled_from(POSITIVE_INTS), _ints(0)),
    st.tuples(st.sampled_from(NON_NEGATIVE_INTS), _ints(-1)),
    st.tuples(st.just("--learning-rate"), _floats(st.floats().filter(lambda x: not 0 < x < 1))),
    st.tuples(st.just("--epochs"), _floats(st.floats(max_value=0))),
    st.tuples(st.just("--train-fraction"), _floats(st.floats().filter(lambda x: not 0 < x <= 1))),
    st.tuples(st.just("--warmup-ratio"), _floats(st.floats().filter(lambda x: not 0 <= x < 1))),
    st.tuples(st.just("--max-grad-norm"), _floats(st.floats(max_value=0))),
    st.tuples(st.just("--weight-decay"), _floats(st.floats(max_value=-1e-9))),
    st.tuples(st.just("--cpus-per-trial"), _floats(st.floats(max_value=0))),
    st.tuples(
        st.just("--gpus-per-trial"),
        _floats(
            st.floats().filter(
                lambda x: x < 0 or (x > 1 and not (math.isfinite(x) and x == int(x)))
            )
        ),
    ),
    st.tuples(st.sampled_from(CHOICES), st.one_of(text, huge).filter(lambda t: t not in _CHOSEN)),
    st.tuples(st.just("--task"), st.one_of(text, huge).filter(lambda t: t not in TASKS)),
    st.tuples(st.just("--output"), _paths),
    st.tuples(
        st.just("--module-learning-rate"),
        st.one_of(
            text.filter(lambda t: "=" not in t), st.sampled_from(["pa=2", "x=0.1", "pa=nan"])
        ),
    ),
    st.tuples(st.just("--data-files"), st.one_of(text.map(lambda t: "{" + t), huge)),
    st.tuples(
        st.just("--reference-point"),
        st.tuples(st.floats(), st.floats().filter(lambda x: not 0 < x <= 1)).map(
            lambda p: f"{p[0]!r} {p[1]!r}"
        ),
    ),
    st.tuples(
        st.just("--nuts"),
        st.tuples(st.integers(max_value=0), st.integers(1, 9), st.integers(1, 9)).map(
            lambda t: " ".join(map(str, t))
        ),
    ),
)
_CHOSEN = {
    "sa",
    "sa-layer",
    "lora",
    "lora-layer",
    "full-lora",
    "sa-pa-layer",
    "full",
    "autopeft",
    "random",
    "fifo",
    "asha",
}
_CHOSEN |= {"hyperband", "saas-nuts", "saas-map", "paper", "short", "head-only", "serial"}
_CHOSEN |= {"parallel", "prefix", "lora", "mam", "unipelt"}


@pytest.fixture
def no_ray(monkeypatch):
    import ray

    def refuse(*args, **kwargs):
        raise AssertionError("Ray started: a generated value was accepted")

    monkeypatch.setattr(ray, "init", refuse)
    # A Ray another test of this session started must not run an accepted search either.
    monkeypatch.setattr(ray, "is_initialized", lambda: False)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(argument=bad_argument)
def test_bad_cli_values_exit_2_before_anything_is_written(no_ray, argument):
    flag, value = argument
    values = value.split(" ") if flag in ("--reference-point", "--nuts") else [value]
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "run"
        err = io.StringIO()
        argv = ["search", *(["--output", str(output)] if flag != "--output" else []), flag, *values]
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as exit_:  # argparse: a bad choice or type
                code = exit_.code
        assert code == 2, (flag, value, err.getvalue())
        assert "Traceback" not in err.getvalue()
        assert not output.exists()


garbage = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.lists(
        st.tuples(st.text(max_size=20), st.one_of(st.text(max_size=5), st.integers(), st.floats())),
        max_size=8,
    )
    .map(lambda rows: "sentence,label\n" + "".join(f"{a!r},{b!r}\n" for a, b in rows))
    .map(str.encode),
)


@settings(max_examples=150, deadline=None)
@given(
    suffix=st.sampled_from([".csv", ".tsv", ".json", ".jsonl", ".parquet"]),
    train=garbage,
    validation=garbage,
)
def test_garbage_data_files_load_or_raise_a_task_error(suffix, train, validation):
    from autopeft_ray.tasks import load_task

    with tempfile.TemporaryDirectory() as folder:
        for split, content in (("train", train), ("validation", validation)):
            (Path(folder) / f"{split}{suffix}").write_bytes(content)
        try:
            data = load_task("sst2", data_files=folder)
        except AutoPeftError:
            return
        labels = data["train"]["label"]
        assert all(isinstance(label, int) and not math.isnan(label) for label in labels)
