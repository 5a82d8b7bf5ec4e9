"""A search on a real multi-node Ray cluster on this host, and what survives losing a node.

The cluster: a head with no CPUs (as in ``cluster/``: trials stay off it) and worker
nodes with 1 CPU each, each started with ``ray start --block`` in its own process
group and Ray temp dir, so that the tests end exactly the processes they started
(``ray stop`` would end every Ray of this user, e.g. a benchmark's). The driver is
``autopeft-ray search --address ...`` in a subprocess, as on a real head node. The
first test keeps the run folder in object storage (a real S3 API on loopback, moto's
server), as an autoscaling cloud cluster without a shared disk would; the others use
this host's disk, which stands in for a shared folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from autopeft_ray.testing.object_store import FAKE_CREDENTIALS, moto_s3

# One xdist worker runs the module: its loopback cluster starts once, and no other test's
# Ray competes for the ports it hands out.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("multinode")]

BIN = Path(sys.executable).parent
# `ray start --head` turns on token authentication by default in Ray 2.60 (token in
# ~/.ray/auth_token); the nodes and drivers that join must ask for it too.
# Every node gets the fake credentials of the moto server (as a cloud node gets its role).
RAY_ENV = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0", **FAKE_CREDENTIALS}


_GIVEN_PORTS: set[int] = set()


def _free_port() -> int:
    """A free port never handed out before in this process: the OS may offer one twice
    once its socket is closed, and two Ray components on one port fail the node's start."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port


@dataclass
class Node:
    """One ``ray start --block`` process; its process group holds all of the node."""

    name: str
    process: subprocess.Popen
    log: Path
    _node_id: str = ""

    @property
    def node_id(self) -> str:
        """The raylet's node id, looked up once: a node keeps its id for life, and a later
        lookup may not find the raylet (e.g. one the head marked dead on a loaded host)."""
        if not self.has_node_id():
            tail = self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""
            raise LookupError(f"no raylet of node {self.name} (log: {self.log}):\n{tail}")
        return self._node_id

    def has_node_id(self) -> bool:
        """Whether the raylet's id is known, looking it up if not yet."""
        if not self._node_id:
            self._node_id = self._find_node_id()
        return bool(self._node_id)

    def _find_node_id(self) -> str:
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if os.getpgid(proc.pid) != self.process.pid:
                    continue
            except ProcessLookupError:
                continue
            for arg in proc.info["cmdline"] or []:
                if arg.startswith("--node_id="):
                    return arg.split("=", 1)[1]
        return ""

    def kill(self) -> None:
        """Lose the node at once: raylet, agents and the trial's worker, like a machine."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@dataclass
class LoopbackCluster:
    temp_dir: Path
    logs: Path
    nodes: list[Node] = field(default_factory=list)
    address: str = ""

    def _start(self, name: str, args: list[str]) -> Node:
        ports = {
            f"--{flag}={_free_port()}"
            for flag in (
                "node-manager-port",
                "object-manager-port",
                "metrics-export-port",
                "dashboard-agent-listen-port",
                "dashboard-agent-grpc-port",
                "runtime-env-agent-port",
            )
        }
        log = self.logs / f"{name}.log"
        process = subprocess.Popen(
            [str(BIN / "ray"), "start", "--block", f"--temp-dir={self.temp_dir}", *ports, *args],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **RAY_ENV},
            start_new_session=True,  # its own process group: what Node.kill and teardown end
        )
        node = Node(name, process, log)
        self.nodes.append(node)
        return node

    def start_head(self) -> None:
        self._start(
            "head",
            [
                "--head",
                f"--port={_free_port()}",
                "--num-cpus=0",
                "--include-dashboard=false",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={_free_port()}",
                f"--ray-client-server-port={_free_port()}",
            ],
        )
        address_file = self.temp_dir / "ray_current_cluster"
        _wait(address_file.exists, 120, f"the head to start (log: {self.logs / 'head.log'})")
        self.address = address_file.read_text().strip()
        head = self.nodes[-1]
        _wait(head.has_node_id, 120, f"the head's raylet (log: {head.log})")

    def add_worker(self, name: str) -> Node:
        node = self._start(name, [f"--address={self.address}", "--num-cpus=1"])
        _wait(node.has_node_id, 120, f"worker {name} to start (log: {node.log})")
        return node

    def workers(self) -> list[Node]:
        return [n for n in self.nodes if n.name != "head" and n.process.poll() is None]

    def shutdown(self) -> None:
        for node in reversed(self.nodes):
            if node.process.poll() is None:
                node.process.terminate()  # `ray start --block` stops its node on SIGTERM
        for node in reversed(self.nodes):
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout=30)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.process.pid, signal.SIGKILL)  # whatever is left in the group
        # Ray worker processes that left the group: they name our temp dir in their
        # command line, which no other Ray on this host uses.
        for proc in psutil.process_iter(["cmdline"]):
            if any(str(self.temp_dir) in arg for arg in proc.info["cmdline"] or []):
                with contextlib.suppress(psutil.Error):
                    proc.kill()


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # Unix socket paths are limited to ~107 characters: keep the Ray temp dir short.
    temp_dir = Path(tempfile.mkdtemp(prefix="apr", dir="/tmp"))
    logs = tmp_path_factory.mktemp("cluster_logs")
    cluster = LoopbackCluster(temp_dir, logs)
    try:
        cluster.start_head()
        cluster.add_worker("worker1")
        cluster.add_worker("worker2")
        yield cluster
    finally:
        cluster.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


#: The log file of each driver started by _search, by process id.
LOGS: dict[int, Path] = {}


def _search(
    cluster: LoopbackCluster, output: Path, tiny: list[str], *args: str, uri: str = ""
) -> subprocess.Popen:
    log = output.parent / f"{output.name}.log"
    driver = subprocess.Popen(
        [str(BIN / "autopeft-ray"), "search", "--address", cluster.address, *tiny]
        + ["--searcher", "random", *args, "--output", uri or str(output)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **RAY_ENV},
        start_new_session=True,
    )
    LOGS[driver.pid] = log
    return driver


def _finish(driver: subprocess.Popen, timeout: float = 420) -> tuple[int, str]:
    try:
        code = driver.wait(timeout=timeout)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    return code, LOGS[driver.pid].read_text()


def _reports(output: Path) -> dict[str, list[dict]]:
    """Every result each trial reported, from Ray Tune's own result.json files."""
    reports: dict[str, list[dict]] = {}
    for path in (output / "tune").glob("*/result.json"):
        for line in path.read_text().splitlines():
            if line.strip():
                result = json.loads(line)
                reports.setdefault(result["trial_id"], []).append(result)
    return reports


def _records(output: Path) -> list[dict]:
    from autopeft_ray.run import RunFolder

    return RunFolder(output).read_records()


def test_trials_run_on_the_worker_nodes_with_the_run_folder_in_object_storage(
    cluster, tmp_path, tiny_search_args
):
    """No shared folder: Tune's state, the checkpoints the workers write and every file of
    the run folder go to the bucket; nothing of the run is written to this host's disk."""
    from autopeft_ray.run import RunFolder

    output = tmp_path / "run"
    started = time.monotonic()
    with moto_s3() as s3:
        uri = s3.uri("cluster/run")
        code, log = _finish(
            _search(
                cluster,
                output,
                tiny_search_args,
                *("--max-steps", "2", "--initial", "2", "--model-based", "0", "--concurrency", "2"),
                uri=uri,
            )
        )
        assert code == 0, log[-3000:]
        records = RunFolder(uri).read_records()
        results = [
            json.loads(line)
            for key in s3.keys("cluster/run/tune/")
            if key.endswith("/result.json")
            for line in s3.read(key).decode().splitlines()
            if line.strip()
        ]
        keys = s3.keys("cluster/run/")
    assert [r["status"] for r in records] == ["completed", "completed"], records
    assert all(r["metrics"]["node_ip"] for r in records)
    head = cluster.nodes[0].node_id
    # Every worker node started, alive or not now: which ran the trials is the point here.
    workers = {n.node_id for n in cluster.nodes if n.name != "head"}
    used = {r["node_id"] for r in results}
    assert used and used <= workers and head not in used, (used, workers, head)
    assert "cluster/run/pareto.json" in keys and len(results) == 2
    assert not output.exists(), "nothing of the run on the local disk"
    print(
        f"search on 2 workers, storage on S3: {time.monotonic() - started:.0f} s, nodes: {len(used)}"
    )


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--gpus-per-trial", "1"], "`--gpus-per-trial` is 1.0, but no node of the Ray cluster"),
        (["--cpus-per-trial", "2"], "`--cpus-per-trial` is 2.0, but no node of the Ray cluster"),
    ],
)
def test_requests_no_node_can_hold_fail_fast(cluster, tmp_path, args, pattern, tiny_search_args):
    """No GPU anywhere and no autoscaler (Ray's read-only monitor): a clear error, no wait."""
    output = tmp_path / "run"
    started = time.monotonic()
    code, log = _finish(
        _search(cluster, output, tiny_search_args, "--max-steps", "2", *args), timeout=180
    )
    elapsed = time.monotonic() - started
    assert code == 2, log[-3000:]
    assert pattern in log and "no autoscaler was found" in log, log[-3000:]
    assert "Traceback" not in log
    assert not (output / "trials.jsonl").exists(), "no trial may start"
    print(f"{args}: failed after {elapsed:.0f} s")


def _kill_first_reporting_worker(cluster: LoopbackCluster, output: Path) -> tuple[str, str]:
    """Wait for a trial's first report, then kill the worker node that runs it."""
    by_id = {n.node_id: n for n in cluster.workers()}
    found: list[tuple[str, str]] = []

    def reported() -> bool:
        for trial_id, results in _reports(output).items():
            if results:
                found.append((trial_id, results[0]["node_id"]))
                return True
        return False

    _wait(reported, 300, "a trial's first report")
    trial_id, node_id = found[0]
    by_id[node_id].kill()
    return trial_id, node_id


@pytest.mark.long(
    reason="a CLI search on a 3-node Ray cluster whose trial's node is killed after its "
    "first report; Ray must notice the lost node and retry the trial on another"
)
@pytest.mark.parametrize("max_failures", [1, 0])
def test_losing_a_worker_node_mid_trial(cluster, tmp_path, max_failures, tiny_search_args):
    """Kill the node of a running trial after its first report (a checkpoint exists).

    With retries the trial resumes on the other worker from that checkpoint; without,
    it is recorded as failed. Either way the search ends and keeps every result.
    """
    while len(cluster.workers()) < 2:  # replace the node an earlier case killed
        cluster.add_worker(f"worker{len(cluster.nodes)}")
    output = tmp_path / "run"
    driver = _search(
        cluster,
        output,
        tiny_search_args,
        *("--max-steps", "40", "--num-evaluations", "2", "--initial", "2", "--model-based", "0"),
        *("--concurrency", "2", "--max-failures", str(max_failures)),
    )
    killed_trial, killed_node = _kill_first_reporting_worker(cluster, output)
    code, log = _finish(driver)

    records = {r["trial_id"]: r for r in _records(output)}
    reports = _reports(output)
    assert len(records) == 2, (records, log[-3000:])
    other = next(r for t, r in records.items() if t != killed_trial)
    assert other["status"] == "completed" and other["metrics"]["fidelity"] == 40
    killed = records[killed_trial]
    nodes = [r["node_id"] for r in reports[killed_trial]]
    fidelities = [r["fidelity"] for r in reports[killed_trial]]
    if max_failures:
        assert killed["status"] == "completed", killed
        assert nodes[0] == killed_node and nodes[-1] != killed_node, nodes
        assert fidelities == [20, 40], "resumed from the checkpoint of the first report"
    else:
        assert killed["status"] == "failed", killed
        assert set(nodes) == {killed_node} and fidelities == [20]
    assert code == 0, log[-3000:]  # the search ended: it was not interrupted
    seen = list(zip(fidelities, nodes, strict=True))
    print(f"max_failures={max_failures}: killed trial's (fidelity, node) reports: {seen}")
