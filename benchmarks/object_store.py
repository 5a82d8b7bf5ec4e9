"""What a run folder in object storage costs: a tiny real search on S3 vs a local folder.

In one process, with one Ray runtime, the same tiny real search (the offline
200-sentence task, random searcher, ``--trials`` trials of ``--max-steps``
steps with ``--evaluations`` reports each, 2 at a time) runs ``--repeats``
times into a local folder and into a bucket on a real S3 API on loopback
(moto's ``ThreadedMotoServer``), alternating, so that the machine's noise hits
both alike. Reported: each search's wall time, the median ratio S3/local, the
extra seconds per trial, the objects and bytes the search left in the bucket;
and, apart from Ray, the run folder's own operations (one trial record written;
all records read back, as ``report`` and ``--resume`` do) on both.

Caveat: loopback has no network latency, and the moto server shares this
process's cores; a real bucket adds about one round trip (10-50 ms) per object
written, which the object counts printed here let you estimate.

    python benchmarks/object_store.py                 # about 6 minutes on 2 cores
    python benchmarks/object_store.py --repeats 1     # smoke
    python benchmarks/object_store.py --repeats 0     # the run folder's operations only
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_ADDRESS", "local")

from autopeft_ray.config import SearchOptions, TrainingSettings  # noqa: E402
from autopeft_ray.run import RunFolder, trial_record  # noqa: E402
from autopeft_ray.testing.object_store import moto_s3  # noqa: E402


def options(output: str, args: argparse.Namespace) -> SearchOptions:
    settings = TrainingSettings(
        task="pang_lee_polarity",
        max_length=32,
        batch_size=8,
        max_eval_examples=16,
        max_steps=args.max_steps,
        num_evaluations=args.evaluations,
    )
    return SearchOptions(
        settings=settings,
        output=output,
        searcher="random",
        num_initial=args.trials,
        num_model_based=0,
        concurrency=2,
        cpus_per_trial=1,
    )


def time_folder_operations(run: RunFolder, records: int) -> tuple[float, float]:
    """Median seconds to keep one trial record, and to read all ``records`` back."""
    writes = []
    for i in range(records):
        record = trial_record(f"t{i:04d}", {"sa_size": 8}, {"score": 0.5}, "completed")
        start = time.perf_counter()
        run.append_record(record)
        writes.append(time.perf_counter() - start)
    reads = []
    for _ in range(5):
        start = time.perf_counter()
        assert len(run.read_records()) == records
        reads.append(time.perf_counter() - start)
    return statistics.median(writes), statistics.median(reads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--evaluations", type=int, default=2)
    parser.add_argument("--records", type=int, default=100)
    args = parser.parse_args()
    command = shlex.join(["python", "benchmarks/object_store.py", *sys.argv[1:]])

    import ray

    from autopeft_ray.experiment.search import run_search

    seconds: dict[str, list[float]] = {"local": [], "s3": []}
    with moto_s3() as s3, tempfile.TemporaryDirectory() as tmp:
        if args.repeats:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        for repeat in range(args.repeats):
            for kind in ("local", "s3") if repeat % 2 == 0 else ("s3", "local"):
                output = (
                    str(Path(tmp) / f"run{repeat}") if kind == "local" else s3.uri(f"run{repeat}")
                )
                start = time.perf_counter()
                run_search(options(output, args))
                seconds[kind].append(time.perf_counter() - start)
                print(f"[{kind}] repeat {repeat}: {seconds[kind][-1]:.1f} s", flush=True)
        ray.shutdown()  # a no-op without ray.init
        keys = s3.keys("run0/") if args.repeats else []
        size = sum(
            item["Size"]
            for page in s3.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=s3.bucket, Prefix="run0/")
            for item in page.get("Contents", [])
        )
        local_write, local_read = time_folder_operations(RunFolder(Path(tmp) / "ops"), args.records)
        s3_write, s3_read = time_folder_operations(RunFolder(s3.uri("ops")), args.records)

    print()
    print(f"# {command}")
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores; moto on loopback")
    if args.repeats:
        ratios = [s / lo for s, lo in zip(seconds["s3"], seconds["local"], strict=True)]
        local, remote = statistics.median(seconds["local"]), statistics.median(seconds["s3"])
        print(
            f"tiny search ({args.trials} trials x {args.max_steps} steps, {args.evaluations} reports each):"
        )
        print(
            f"  local folder  median {local:.1f} s  ({', '.join(f'{s:.1f}' for s in seconds['local'])})"
        )
        print(
            f"  S3 (moto)     median {remote:.1f} s  ({', '.join(f'{s:.1f}' for s in seconds['s3'])})"
        )
        print(
            f"  ratio S3/local: median {statistics.median(ratios):.3f} (per repeat: "
            f"{', '.join(f'{r:.3f}' for r in ratios)})"
        )
        print(f"  extra per trial: {(remote - local) / args.trials:+.2f} s")
        print(
            f"  the bucket after one search: {len(keys)} objects, {size / 1e6:.1f} MB "
            f"({len(keys) / args.trials:.1f} objects per trial)"
        )
    print(f"run folder operations ({args.records} records):")
    print(f"  keep one trial record: local {1e3 * local_write:.2f} ms, S3 {1e3 * s3_write:.2f} ms")
    print(f"  read all records back: local {1e3 * local_read:.1f} ms, S3 {1e3 * s3_read:.1f} ms")


if __name__ == "__main__":
    main()
