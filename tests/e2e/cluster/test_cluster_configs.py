"""The cluster configurations: Ray's own validation, the project's pins, the documented commands.

Nothing here contacts a cloud or a Kubernetes API. The cluster-launcher configs go through
the offline half of what `ray up` does before it calls the provider (`prepare_config`, then
`validate_config` against Ray's JSON schema). No KubeRay CRD schema ships in any installed
package, so the RayJob is checked field by field against what KubeRay reads; its runtime
environment goes through Ray's own `RuntimeEnv` validation.

The run folder is a bucket on every cloud config (no shared file system): the documented
commands put `--output` on the one bucket variable, and every node's role, service account
or pod identity may read and write that bucket and nothing else.

The cloud permissions are checked by evaluating them: the AWS head policy goes through a
small IAM evaluator (the condition operators it uses) against the requests Ray's node
provider makes, and against the ones it must refuse; the GCP condition is parsed and
evaluated against the instance names Ray gives. Every install goes through a lock file
with hashes, and every lock holds the project's pins and the tested dependency closure.
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import ipaddress
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from fnmatch import fnmatchcase
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
import ray
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.runtime_env import RuntimeEnv

from autopeft_ray.cli import _search_options, build_parser

ROOT = Path(__file__).resolve().parents[3]
CLUSTER = ROOT / "cluster"
LAUNCHER_CONFIGS = ["aws.yaml", "gcp.yaml"]
# The shared folder the configs used before the run folder moved to a bucket.
OLD_SHARED = "/mnt/shared"
# The one variable the launcher configs' commands and cluster/README.md name the bucket by.
BUCKET_VAR = "AUTOPEFT_BUCKET"
SCHEME = {"aws": "s3", "gcp": "gs"}
STORAGE_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
COMPUTE_SCOPE = "https://www.googleapis.com/auth/compute"
ALL_SCOPES = "https://www.googleapis.com/auth/cloud-platform"
# What pyarrow needs on the bucket (multipart: checkpoints upload in parts), and no more.
S3_BUCKET_ACTIONS = {"s3:ListBucket"}
S3_OBJECT_ACTIONS = {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}
S3_OBJECT_ACTIONS |= {"s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}
RAY_IMAGE = re.compile(r"rayproject/ray:(?P<version>\d+\.\d+\.\d+)-py(?P<py>\d)(?P<minor>\d+)")
TORCH_INDEX = re.compile(r"https://download\.pytorch\.org/whl/(cpu|cu\d+)")
# pip options whose next word is a value, not something to install.
VALUE_OPTIONS = {"-i", "--index-url", "--extra-index-url", "-c", "--constraint", "-f"}
VALUE_OPTIONS |= {"--find-links", "-r", "--requirement"}
# The lock files every install goes through (cluster/README.md, "Pinned installs").
LOCKS = {
    "cpu": "requirements-cpu.lock",
    "gpu": "requirements-gpu.lock",
    "launcher": "requirements-launcher.lock",
}
# The only pip that may install without a lock: the scratch one that runs the lock tool.
LOCK_TOOL_PIP = "/tmp/lockenv/bin/"
# A pinned image reference, and a pinned AMI; REPLACE-ME marks what the user fills in.
DIGEST = re.compile(r"@sha256:(?:[0-9a-f]{64}|DIGEST-REPLACE-ME)")
AMI = re.compile(r"ami-(?:[0-9a-f]{8}|[0-9a-f]{17}|REPLACE-ME)")
# The markers of the nodes the locks are for: the rayproject/ray py311 images, x86_64.
NODE_MARKERS = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
# The namespace every object of kuberay.yaml lives in, and the operator's.
KUBE_NAMESPACE = "autopeft-ray"
OPERATOR = {"app.kubernetes.io/name": "kuberay-operator"}
# The ports of a node other nodes connect to; on-prem pins each with `ray start`.
RAY_PORT_FLAGS = (
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-agent-grpc-port",
    "--dashboard-agent-listen-port",
    "--metrics-export-port",
    "--min-worker-port",
    "--max-worker-port",
)


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins() -> dict[str, Requirement]:
    reqs = (Requirement(text) for text in _pyproject()["project"]["dependencies"])
    return {req.name: req for req in reqs}


def _pinned_version(name: str) -> str:
    (spec,) = _pins()[name].specifier
    assert spec.operator == "==", f"{name} should be pinned with ==, got {spec}"
    return spec.version


def _launcher(name: str) -> dict[str, Any]:
    return yaml.safe_load((CLUSTER / name).read_text())


def _kuberay_documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((CLUSTER / "kuberay.yaml").read_text()) if d]


def _rayjob() -> dict[str, Any]:
    (job,) = [d for d in _kuberay_documents() if d["kind"] == "RayJob"]
    return job


def _pip_install_commands(text: str) -> list[SimpleNamespace]:
    """Every `pip install ...` written in a text (a command, a code block, a comment): which
    pip runs it, its flags, its options' values, the requirement files and the targets."""
    lines = [re.sub(r"^\s*#\s?", "", line) for line in text.splitlines()]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    installs = []
    # One command ends at a line's end, a backquote (prose), `;`, `&&` or `||`.
    for match in re.finditer(r"(\S*?)\bpip install\b([^\n`;&|]*)", joined):
        words = shlex.split(match[2], comments=True)
        flags, options, locks, targets = set(), {}, [], []
        rest = iter(words)
        for word in rest:
            if word in ("-r", "--requirement"):
                locks.append(next(rest))
            elif word in ("-e", "--editable"):
                targets.append(next(rest))
            elif word in VALUE_OPTIONS:
                options.setdefault(word, []).append(next(rest))
            elif word.startswith("-"):
                flags.add(word)
            else:
                targets.append(word)
        if locks or targets:  # prose such as "`pip install --require-hashes`" installs nothing
            installs.append(
                SimpleNamespace(
                    pip=match[1], flags=flags, options=options, locks=locks, targets=targets
                )
            )
    return installs


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", text, re.S)


def _shell_commands(text: str) -> list[list[str]]:
    """The words of every shell command in a markdown file's code blocks: continuation lines
    joined, comments and here-document bodies dropped."""
    commands = []
    for block in _code_blocks(text):
        block = re.sub(r"<<'?EOF'?\n.*?\nEOF\n", "\n", block, flags=re.S)
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            try:
                words = shlex.split(line, comments=True)
            except ValueError:  # not a command (a line of JSON, say)
                continue
            if words:
                commands.append(words)
    return commands


def _option(words: list[str], name: str) -> str | None:
    """The value of `--name=value` or `--name value` in a command's words."""
    for i, word in enumerate(words):
        if word.startswith(f"{name}="):
            return word.split("=", 1)[1]
        if word == name and i + 1 < len(words):
            return words[i + 1]
    return None


def _heredoc_text(text: str, name: str) -> str:
    match = re.search(rf"cat > {re.escape(name)} <<EOF\n(.*?)\nEOF\n", text, re.S)
    assert match, f"README: no {name}"
    return match[1]


def _lock(name: str) -> dict[str, SimpleNamespace]:
    """A lock file's requirements by name: version, marker and hashes (one line each)."""
    text = re.sub(r"\\\n\s*", " ", (CLUSTER / name).read_text())
    entries = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        requirement, *hashes = [part.strip() for part in line.split("--hash=")]
        req = Requirement(requirement)
        assert req.name not in entries, f"{name}: {req.name} twice"
        (spec,) = req.specifier
        assert spec.operator == "==" and not req.url, f"{name}: {requirement} is not pinned"
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), (
            f"{name}: {requirement} has no sha256 (pip --require-hashes refuses it)"
        )
        entries[canonicalize_name(req.name)] = SimpleNamespace(
            version=spec.version, marker=req.marker, hashes=hashes
        )
    return entries


def _ray_source(relative: str) -> str:
    """A file of the installed Ray, for what it names that the tests must agree with."""
    spec = importlib.util.find_spec("ray")
    assert spec and spec.origin
    return (Path(spec.origin).parent / relative).read_text()


def _local_target(target: str) -> tuple[str, set[str]] | None:
    """(path, extras) for a local-folder install such as `/home/ray/repo[extra]`."""
    if not target.startswith(("/", ".", "~")):
        return None
    path, _, extras = target.partition("[")
    return path.rstrip("/"), {e.strip() for e in extras.rstrip("]").split(",") if e.strip()}


def _search_commands(text: str) -> list[list[str]]:
    """Arguments of every complete `autopeft-ray search ...` written in a file or a command.

    A script that sets `OUT=...` once (kuberay.yaml's entrypoint) and passes `"$OUT"` gets
    that value in its place. Shell variables inside an argument (`s3://$AUTOPEFT_BUCKET/...`)
    stay as written: the CLI only parses them, it touches no storage at parse time.
    """
    lines = [re.sub(r"^\s*#\s?", "", line) for line in text.splitlines()]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    out = re.search(r"\bOUT=([^\s;'\"]+)", joined)
    if out:
        joined = joined.replace('"$OUT"', out.group(1))
    commands = []
    for match in re.finditer(r"autopeft-ray search([^'\"`\n;]*)", joined):
        # A bare mention in prose, or an abbreviated one, is not a command to run.
        if match.group(1).strip() and "..." not in match.group(1):
            commands.append(shlex.split(match.group(1)))
    return commands


def _parse_search(args: list[str]) -> Any:
    """The documented command as the CLI reads it: its options, and whether it resumes."""
    try:
        parsed = build_parser().parse_args(["search", *args])
    except SystemExit:
        pytest.fail(f"autopeft-ray rejects the documented command: search {shlex.join(args)}")
    options = _search_options(parsed)
    return SimpleNamespace(resume=parsed.resume, **vars(options))


def _check_fits(args: Any, cpus: float, gpus: float, nodes: int, where: str) -> None:
    """The documented command's trials fit on the worker nodes the config can start."""
    assert args.gpus_per_trial > 0, f"{where}: the cluster has GPU workers; use them"
    assert args.cpus_per_trial <= cpus and args.gpus_per_trial <= gpus, where
    per_node = min(cpus // args.cpus_per_trial, gpus // args.gpus_per_trial)
    assert per_node * nodes >= args.concurrency, (
        f"{where}: {args.concurrency} trials of ({args.cpus_per_trial} CPU, "
        f"{args.gpus_per_trial} GPU) need more than {nodes} nodes of ({cpus} CPU, {gpus} GPU)"
    )


def test_pyproject_pins_every_dependency():
    """Installing the project installs the pins, which is how every config installs them."""
    for name, req in _pins().items():
        assert {s.operator for s in req.specifier} & {"==", "~="}, f"{name} is not pinned: {req}"
    assert _pinned_version("ray") == ray.__version__


# -- Ray cluster launcher (aws.yaml, gcp.yaml) ---------------------------------------------


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_passes_rays_validation(name):
    """The offline steps of `ray up`: merge with the provider's defaults, then the schema."""
    prepared = prepare_config(copy.deepcopy(_launcher(name)))
    validate_config(prepared)
    common = prepared["setup_commands"]
    assert prepared["head_setup_commands"][: len(common)] == common


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
@pytest.mark.parametrize(
    ("breakage", "error"),
    [
        (lambda c: c["available_node_types"]["gpu_worker"].update(typo=1), "ValidationError"),
        (lambda c: c["available_node_types"]["gpu_worker"]["resources"].update(GPU=0.5), "0.5"),
        (lambda c: c.update(head_node_type="nowhere"), "head_node_type"),
    ],
    ids=["unknown-field", "fractional-resource", "missing-head-type"],
)
def test_rays_validation_rejects_a_broken_copy(name, breakage, error):
    """The validation above is live: the same config with one mistake is refused."""
    config = _launcher(name)
    breakage(config)
    with pytest.raises((jsonschema.ValidationError, ValueError)) as caught:
        validate_config(prepare_config(config))
    assert error in f"{type(caught.value).__name__} {caught.value}"


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_has_a_cpu_head_and_gpu_workers_from_zero(name):
    config = _launcher(name)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    workers = [t for key, t in types.items() if key != config["head_node_type"]]
    gpu_workers = [t for t in workers if t["resources"].get("GPU", 0) >= 1]
    assert gpu_workers, f"{name}: no GPU worker type"
    for worker in gpu_workers:
        assert worker["min_workers"] == 0
        assert 1 <= worker["max_workers"] <= config["max_workers"]

    head_start = " ".join(config["head_start_ray_commands"])
    assert "ray start --head" in head_start
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "--address=$RAY_HEAD_IP:6379" in " ".join(config["worker_start_ray_commands"])


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_installs_the_project_and_torch_at_the_pins_on_every_node(name):
    config = _launcher(name)
    # A node type's own worker_setup_commands replace the global setup_commands there.
    assert not any("worker_setup_commands" in t for t in config["available_node_types"].values())
    shipped = [remote for remote, local in config["file_mounts"].items() if local == "."]
    assert shipped, f"{name}: the checkout (`.` from the repository root) is not shipped"
    assert (ROOT / "pyproject.toml").exists()

    installs = [i for command in config["setup_commands"] for i in _pip_install_commands(command)]
    project = [
        n
        for n, install in enumerate(installs)
        for target in install.targets
        if (local := _local_target(target)) and local[0] in shipped
    ]
    assert project, f"{name}: setup_commands never pip-install the shipped checkout"
    (target,) = installs[project[0]].targets
    assert "dashboard" in _local_target(target)[1], "the dashboard extra brings ray[default]"
    # Its dependencies are all in the lock: nothing else may come in without a hash.
    assert {"--no-deps", "--no-build-isolation"} <= installs[project[0]].flags

    # torch and every other package from the locks, before the project: the CUDA build of
    # the pinned torch on GPU nodes, the CPU build of the same version elsewhere.
    locked = [n for n, install in enumerate(installs) if install.locks]
    assert locked and max(locked) < project[0], f"{name}: install the locks before the project"
    paths = {lock: installs[n] for n in locked for lock in installs[n].locks}
    assert set(paths) == {f"{shipped[0]}/cluster/{LOCKS[kind]}" for kind in ("cpu", "gpu")}
    assert all("--require-hashes" in install.flags for install in paths.values())
    (command,) = [c for c in config["setup_commands"] if LOCKS["gpu"] in c]
    assert re.search(rf"nvidia-smi.*then[^;]*{LOCKS['gpu']}.*else[^;]*{LOCKS['cpu']}", command)
    cpu_index = paths[f"{shipped[0]}/cluster/{LOCKS['cpu']}"].options["--extra-index-url"]
    assert [m[1] for i in cpu_index if (m := TORCH_INDEX.fullmatch(i))] == ["cpu"], cpu_index
    torch = {kind: Version(_lock(LOCKS[kind])["torch"].version) for kind in ("cpu", "gpu")}
    assert {v.public for v in torch.values()} == {_pinned_version("torch")}, torch
    assert (torch["cpu"].local, torch["gpu"].local) == ("cpu", None), torch


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_images_run_the_pinned_ray_on_the_projects_python(name):
    docker = _launcher(name)["docker"]
    images = [docker[key] for key in ("image", "head_image", "worker_image") if key in docker]
    assert len(images) >= 2
    _check_images(images)


def _check_images(images: list[str]) -> None:
    python = SpecifierSet(_pyproject()["project"]["requires-python"])
    for image in images:
        match = RAY_IMAGE.fullmatch(image.split("-cpu")[0].split("-gpu")[0])
        assert match, f"not a versioned rayproject/ray image with a Python tag: {image}"
        assert match["version"] == _pinned_version("ray") == ray.__version__, image
        assert f"{match['py']}.{match['minor']}" in python, image


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_documented_commands_run_with_this_cli_and_fit_the_cluster(name):
    config = _launcher(name)
    commands = [_parse_search(args) for args in _search_commands((CLUSTER / name).read_text())]
    assert any(a.resume for a in commands), f"{name}: no resume command"
    assert any(not a.resume for a in commands), f"{name}: no launch command"
    (worker,) = [t for t in config["available_node_types"].values() if t.get("min_workers") == 0]
    bucket = f"{SCHEME[config['provider']['type']]}://${BUCKET_VAR}/"
    for args in commands:
        assert args.address == "auto"
        # Trials checkpoint from every node: into the bucket, named by the one variable.
        assert args.output.startswith(bucket), (name, args.output)
        if not args.resume:
            res = worker["resources"]
            _check_fits(args, res["CPU"], res["GPU"], worker["max_workers"], name)
    assert len({a.output for a in commands}) == 1, "launch and resume use one run folder"
    text = (CLUSTER / name).read_text()
    assert f"export {BUCKET_VAR}=" in text
    # The copy-home command reads the same run folder.
    fetch = {"aws": "aws s3 sync ", "gcp": "gcloud storage rsync --recursive "}
    assert f"{fetch[config['provider']['type']]}{commands[0].output} " in text


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_needs_no_shared_folder(name):
    """The run folder is a bucket: no node mounts or prepares a shared folder."""
    config = _launcher(name)
    text = (CLUSTER / name).read_text()
    assert OLD_SHARED not in text and "ray rsync-down" not in text
    assert not any(option.startswith("-v ") for option in config["docker"]["run_options"])
    for command in config.get("initialization_commands", []):
        assert not re.search(r"\bmount\b|\bchmod\b|\bchown\b", command), command


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_is_closed_by_default(name):
    """Token authentication on every node, no world-writable folder, no open SSH (AWS)."""
    config = _launcher(name)
    text = (CLUSTER / name).read_text()
    assert "chmod 777" not in text and "0.0.0.0/0" not in yaml.safe_dump(config)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config[key] if "ray start" in c]
        assert starts and all("export RAY_AUTH_MODE=token;" in c for c in starts), key
    assert config["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"
    if config["provider"]["type"] == "aws":
        for key, node in config["available_node_types"].items():
            # Ray's default group opens SSH to the world; your own group does not.
            assert node["node_config"]["SecurityGroupIds"] == ["sg-REPLACE-ME"], key
        assert "security_group" not in config["provider"]


# -- Pinned installs: images, machine images, lock files --------------------------------------


def _all_images() -> dict[str, str]:
    """Every container image the configurations run, by where it is set."""
    images = {}
    for name in LAUNCHER_CONFIGS:
        docker = _launcher(name)["docker"]
        for key in ("image", "head_image", "worker_image"):
            if key in docker:
                images[f"{name} docker.{key}"] = docker[key]
    spec = _rayjob()["spec"]
    cluster = spec["rayClusterSpec"]
    templates = {
        "head": cluster["headGroupSpec"]["template"],
        "submitter": spec["submitterPodTemplate"],
        **{g["groupName"]: g["template"] for g in cluster["workerGroupSpecs"]},
    }
    for where, template in templates.items():
        for container in template["spec"]["containers"]:
            images[f"kuberay.yaml {where}/{container['name']}"] = container["image"]
    return images


def test_images_are_pinned_by_digest_and_machine_images_by_id():
    """A tag or an image family moves; a digest or an id does not. The values may be the
    documented placeholders (no registry or cloud was reachable), never a bare tag, an SSM
    parameter or a family resolved at launch; the README says how to fill them in."""
    images = _all_images()
    assert len(images) >= 7, images
    for where, image in images.items():
        reference, _, _ = image.partition("@")
        assert DIGEST.fullmatch(image[len(reference) :]), f"{where}: {image} is pinned by tag only"
    _check_images([image.partition("@")[0] for image in images.values()])

    aws = _launcher("aws.yaml")
    assert "resolve:ssm" not in (CLUSTER / "aws.yaml").read_text()
    for key, node in aws["available_node_types"].items():
        image = node["node_config"]["ImageId"]
        assert AMI.fullmatch(image), f"aws.yaml {key}: ImageId {image} is not an AMI id"
    amis = {node["node_config"]["ImageId"] for node in aws["available_node_types"].values()}
    policy_images = {
        r.rsplit("/", 1)[1]
        for s in _aws_head_policy()["Statement"]
        for r in _as_list(s["Resource"])
        if ":image/" in r
    }
    assert policy_images == amis, "the head may launch exactly the AMI aws.yaml pins"
    for key, node in _launcher("gcp.yaml")["available_node_types"].items():
        for disk in node["node_config"]["disks"]:
            source = disk["initializeParams"]["sourceImage"]
            assert "/family/" not in source, f"gcp.yaml {key}: {source} is resolved at launch"
            assert re.fullmatch(r"projects/[^/]+/global/images/[^/]+", source), source

    readme = (CLUSTER / "README.md").read_text()
    for tag in sorted({image.partition("@")[0] for image in images.values()}):
        assert f"crane digest {tag}" in readme, f"README: how to pin {tag}"
    assert "aws ec2 describe-images" in readme
    assert "gcloud compute images describe-from-family" in readme


def _install_sources() -> dict[str, str]:
    """Every text in cluster/ that may hold an install: the markdown files' code blocks, the
    configs' comments and their string values (the commands)."""

    def strings(value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            value = list(value.values())
        return [s for v in value for s in strings(v)] if isinstance(value, list) else []

    sources = {}
    for path in sorted(CLUSTER.iterdir()):
        text = path.read_text()
        if path.suffix == ".md":
            sources[path.name] = "\n".join(_code_blocks(text))
        elif path.suffix == ".yaml":
            comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
            values = [s for d in yaml.safe_load_all(text) if d for s in strings(d)]
            sources[path.name] = "\n".join(comments + values)
    return sources


def test_every_install_goes_through_a_hash_lock_and_no_floor_is_left():
    """pip's hash-checking mode for every package a node or your machine installs (it
    refuses any file, and any package, that the lock lacks); the checkout alone installs
    without hashes, and then without dependencies. No `>=` floor, no unpinned name."""
    seen = set()
    for where, text in _install_sources().items():
        for install in _pip_install_commands(text):
            for target in install.targets:
                if _local_target(target) is None:
                    (spec,) = Requirement(target).specifier or [None]
                    assert spec and spec.operator == "==", f"{where}: installs {target}"
            if install.pip == LOCK_TOOL_PIP:  # the lock generator, in a scratch venv
                continue
            if install.locks:
                assert "--require-hashes" in install.flags, f"{where}: {install}"
                assert not install.targets, f"{where}: {install.targets} beside a lock"
                for lock in install.locks:
                    assert Path(lock).parent.name == "cluster", f"{where}: {lock}"
                    assert Path(lock).name in LOCKS.values(), f"{where}: {lock}"
                    seen.add(Path(lock).name)
            else:
                assert all(_local_target(target) for target in install.targets), (
                    f"{where}: installs {install.targets} without hashes"
                )
                assert "--no-deps" in install.flags, f"{where}: {install.targets} pulls deps"
    assert seen == set(LOCKS.values()), seen


def _requires_closure(lock: dict[str, SimpleNamespace], where: str) -> set[str]:
    """Walk autopeft-ray[dashboard]'s requirements through the installed (tested)
    distributions, with the nodes' markers: each must be in the lock at a version that
    satisfies it. A locked package the tested environment lacks (the CUDA libraries) is
    checked by its pin alone. Returns the names walked."""
    todo = [(_pyproject()["project"]["name"], frozenset({"dashboard"}))]
    walked: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in walked:
            continue
        walked.add((name, extras))
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            markers = [{**NODE_MARKERS, "extra": e} for e in (extras or {""})]
            if req.marker and not any(req.marker.evaluate(m) for m in markers):
                continue
            key = canonicalize_name(req.name)
            assert key in lock, f"{where}: {name} requires {req}, which the lock lacks"
            version = lock[key].version
            assert req.specifier.contains(version, prereleases=True), (
                f"{where}: {name} requires {req}; the lock has {version}"
            )
            todo.append((key, frozenset(req.extras)))
    return {name for name, _ in walked}


def test_locks_pin_every_package_with_hashes_and_hold_the_tested_set():
    """Each lock: every line `==` with sha256 hashes (pip --require-hashes takes nothing
    less), the project's pins at the tested versions, and the whole dependency closure of
    autopeft-ray[dashboard]. The two node locks differ only in torch's build: CPU (the
    tested one) on the head, PyPI's CUDA 13.0 build and its CUDA libraries on GPU nodes."""
    cpu, gpu, launcher = (_lock(LOCKS[k]) for k in ("cpu", "gpu", "launcher"))
    for name, req in _pins().items():
        installed = Version(importlib.metadata.version(req.name))
        for kind, lock in (("cpu", cpu), ("gpu", gpu)):
            locked = Version(lock[canonicalize_name(req.name)].version)
            assert req.specifier.contains(locked), f"{LOCKS[kind]}: {name} {locked} vs {req}"
            assert locked.public == installed.public, f"{LOCKS[kind]}: {name} is not the tested one"
    assert Version(cpu["torch"].version) == Version(importlib.metadata.version("torch"))
    walked = _requires_closure(cpu, LOCKS["cpu"]) | _requires_closure(gpu, LOCKS["gpu"])
    assert len(walked) > 50, f"the closure walk found almost nothing: {sorted(walked)}"
    cuda = set(gpu) - set(cpu)
    assert cuda and all(n.startswith(("nvidia-", "cuda-", "triton")) for n in cuda), cuda
    assert {"boto3", "google-api-python-client"} <= set(cpu) - set(gpu)
    for name in set(cpu) & set(gpu) - {"torch"}:
        assert cpu[name].version == gpu[name].version, f"{name}: the locks disagree"
    assert Version(launcher["ray"].version) == Version(ray.__version__)
    assert {"boto3", "google-api-python-client"} <= set(launcher)
    # The locks say how they were made, and the README has the commands that remake them.
    readme = (CLUSTER / "README.md").read_text()
    assert "--generate-hashes" in readme and "pip freeze --exclude-editable" in readme
    for lock in LOCKS.values():
        assert "cluster/README.md, Pinned installs" in (CLUSTER / lock).read_text()[:300]
        assert f"-o cluster/{lock}" in readme, f"README: how {lock} is made"


def _node_configs(config: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The head's node_config, and the workers' ones."""
    types = config["available_node_types"]
    workers = [t["node_config"] for k, t in types.items() if k != config["head_node_type"]]
    return types[config["head_node_type"]]["node_config"], workers


def test_aws_head_and_workers_each_have_their_own_scoped_instance_profile():
    """Workers write checkpoints to the bucket, so they get a role too: their own, with only
    the bucket in it; the head's (EC2 for the cluster, and the bucket) stays the head's."""
    head, workers = _node_configs(_launcher("aws.yaml"))
    profile = "arn:aws:iam::ACCOUNT-ID-REPLACE-ME:instance-profile/autopeft-ray-{}"
    assert head["IamInstanceProfile"] == {"Arn": profile.format("head")}
    assert workers
    for worker in workers:
        assert worker["IamInstanceProfile"] == {"Arn": profile.format("worker")}


def test_gcp_nodes_run_as_their_own_accounts_with_storage_scopes():
    """No node keeps Ray's broad default account; workers get the storage scope only."""
    head, workers = _node_configs(_launcher("gcp.yaml"))
    email = "autopeft-ray-{}@PROJECT-ID-REPLACE-ME.iam.gserviceaccount.com"
    (account,) = head["serviceAccounts"]
    assert account["email"] == email.format("head")
    # The head's autoscaler starts and stops instances; it reads and writes the bucket.
    assert sorted(account["scopes"]) == [COMPUTE_SCOPE, STORAGE_SCOPE]
    assert workers
    for worker in workers:
        (account,) = worker["serviceAccounts"]
        assert account["email"] == email.format("worker")
        assert account["scopes"] == [STORAGE_SCOPE] and ALL_SCOPES not in account["scopes"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _condition_holds(op: str, key: str, expected: Any, context: dict[str, Any]) -> bool:
    """One condition of an IAM statement against a request's context, as IAM evaluates the
    operators the policies here use (a multi-valued key needs ForAllValues/ForAnyValue; a
    ForAllValues over an absent key holds, hence the Null checks in the policy)."""
    expected = _as_list(expected)
    if op == "Null":
        (absent,) = expected
        return (key not in context) == (absent == "true")
    qualifier, _, base = op.rpartition(":")
    compare = {
        "StringEquals": str.__eq__,
        "StringLike": fnmatchcase,
        "ArnEquals": str.__eq__,
        "ArnLike": fnmatchcase,
    }.get(base)
    assert compare, f"the test's IAM evaluator does not know the operator {op}"
    if key not in context:
        return qualifier == "ForAllValues"
    values = _as_list(context[key])

    def matches(value: str) -> bool:
        return any(compare(value, pattern) for pattern in expected)

    if qualifier == "ForAllValues":
        return all(map(matches, values))
    if qualifier == "ForAnyValue":
        return any(map(matches, values))
    assert not qualifier and len(values) == 1, (op, key, values)
    return matches(values[0])


def _iam_allows(policy: dict[str, Any], action: str, resource: str, context: dict) -> bool:
    """Whether an identity policy allows one action on one resource: some Allow statement
    matches action, resource and all its conditions, and no Deny statement does."""
    allowed = False
    for statement in policy["Statement"]:
        if not any(fnmatchcase(action, a) for a in _as_list(statement["Action"])):
            continue
        if not any(fnmatchcase(resource, r) for r in _as_list(statement["Resource"])):
            continue
        conditions = statement.get("Condition", {})
        if all(
            _condition_holds(op, key, value, context)
            for op, block in conditions.items()
            for key, value in block.items()
        ):
            if statement["Effect"] == "Deny":
                return False
            allowed = True
    return allowed


def _aws_head_policy() -> dict[str, Any]:
    text = (CLUSTER / "README.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    (head,) = [json.loads(b) for b in blocks if "iam:PassRole" in b]
    return head


def test_aws_head_policy_launches_and_tags_only_this_clusters_workers():
    """The head's policy, evaluated: it launches a worker exactly as Ray's node provider does
    (RunInstances with the cluster's tag, then status tags on that instance), and refuses a
    launch with another profile, subnet, group, AMI, type, template or cluster tag, and
    every tag that would adopt a foreign instance into the cluster (then to terminate it)."""
    config = _launcher("aws.yaml")
    policy = _aws_head_policy()
    cluster, region = config["cluster_name"], config["provider"]["region"]
    head, (worker,) = _node_configs(config)
    account = worker["IamInstanceProfile"]["Arn"].split(":")[4]

    def arn(kind: str, name: str) -> str:
        return f"arn:aws:ec2:{region}:{account}:{kind}/{name}"

    def create_tags(on: dict[str, str], new: dict[str, str]) -> bool:
        context = {f"ec2:ResourceTag/{k}": v for k, v in on.items()}
        context |= {f"aws:RequestTag/{k}": v for k, v in new.items()}
        context["aws:TagKeys"] = list(new)
        return _iam_allows(policy, "ec2:CreateTags", arn("instance", "i-0abc"), context)

    own = {"ray-cluster-name": cluster}
    # What Ray's updater sets on a node it launched (one key per call).
    for key in ("ray-node-status", "ray-runtime-config", "ray-file-mounts-contents"):
        assert create_tags(own, {key: "x"}), f"Ray cannot update {key} on its own worker"
    assert not create_tags({}, own), "the head can tag any instance as this cluster's"
    assert not create_tags({"ray-cluster-name": "other"}, own), "it can adopt a foreign node"
    assert not create_tags(own, {"ray-cluster-name": "other"}), "it can release its own"
    assert not create_tags({"Name": "db"}, {"ray-node-status": "x"}), "it tags foreign nodes"
    assert not create_tags(own, {"Name": "x", "ray-node-status": "x"}), "it sets other keys"
    for action in ("ec2:TerminateInstances", "ec2:StopInstances"):
        assert _iam_allows(
            policy, action, arn("instance", "i-0abc"), {"ec2:ResourceTag/ray-cluster-name": cluster}
        )
        assert not _iam_allows(policy, action, arn("instance", "i-0abc"), {}), action

    assert "SubnetIds" in worker, "aws.yaml: no SubnetIds, so no subnet to scope RunInstances to"

    # Ray 2.60's AWS node provider: a worker is tagged in RunInstances (TagSpecifications),
    # with its cluster's name, and runs with its node type's node_config.
    launch = {
        "profile": worker["IamInstanceProfile"]["Arn"],
        "subnet": worker["SubnetIds"][0],
        "group": worker["SecurityGroupIds"][0],
        "image": worker["ImageId"],
        "type": worker["InstanceType"],
        "tags": {"ray-cluster-name": cluster, "ray-node-status": "uninitialized"},
        "template": None,
    }

    def run_instances(**change: Any) -> bool:
        request = {**launch, **change}
        tags = {f"aws:RequestTag/{k}": v for k, v in request["tags"].items()}
        tags["aws:TagKeys"] = list(request["tags"])
        instance = {
            **tags,
            "ec2:InstanceProfile": request["profile"],
            "ec2:InstanceType": request["type"],
        }
        resources = {
            arn("instance", "i-0new"): instance,
            arn("volume", "vol-0new"): {},
            arn("network-interface", "eni-0new"): {},
            arn("subnet", request["subnet"]): {},
            arn("security-group", request["group"]): {},
            arn("key-pair", f"ray-autoscaler_{region}"): {},
            f"arn:aws:ec2:{region}::image/{request['image']}": {},
        }
        if request["template"]:
            instance["ec2:LaunchTemplate"] = arn("launch-template", request["template"])
            resources[instance["ec2:LaunchTemplate"]] = {}
        role = request["profile"].replace(":instance-profile/", ":role/")
        return (
            all(_iam_allows(policy, "ec2:RunInstances", r, c) for r, c in resources.items())
            and _iam_allows(
                policy,
                "ec2:CreateTags",
                arn("instance", "i-0new"),
                {**tags, "ec2:CreateAction": "RunInstances"},
            )
            and _iam_allows(
                policy, "iam:PassRole", role, {"iam:PassedToService": "ec2.amazonaws.com"}
            )
        )

    assert run_instances(), "the head cannot launch a worker the way Ray does"
    refused = {
        "the head's instance profile": {"profile": head["IamInstanceProfile"]["Arn"]},
        "another subnet": {"subnet": "subnet-0123456789abcdef0"},
        "another security group": {"group": "sg-0123456789abcdef0"},
        "another AMI": {"image": "ami-0123456789abcdef0"},
        "another instance type": {"type": "p5.48xlarge"},
        "a launch template": {"template": "lt-0123456789abcdef0"},
        "another cluster's tag": {"tags": {"ray-cluster-name": "other"}},
        "no cluster tag": {"tags": {"Name": "mine"}},
    }
    for what, change in refused.items():
        assert not run_instances(**change), f"the head may launch an instance with {what}"

    # Nothing but reads is granted on "*"; the AMI is not looked up by name at launch.
    for statement in policy["Statement"]:
        if "*" in _as_list(statement["Resource"]):
            actions = _as_list(statement["Action"])
            assert all(a.startswith("ec2:Describe") for a in actions), statement
    actions = {a for s in policy["Statement"] for a in _as_list(s["Action"])}
    assert not any(a.startswith("ssm:") for a in actions), actions


def _cel_allows(expression: str, resource_type: str, resource_name: str) -> bool:
    """An IAM condition of the form the README writes (a disjunction of conjunctions of
    `resource.type == "..."`, `resource.name.startsWith("...")`, `resource.name == "..."`),
    evaluated for one resource. Any other term fails the test rather than being guessed."""
    for clause in re.split(r"\s*\|\|\s*", expression.strip()):
        clause = clause.strip()
        if clause.startswith("(") and clause.endswith(")"):
            clause = clause[1:-1]
        holds = True
        for term in re.split(r"\s*&&\s*", clause):
            if m := re.fullmatch(r'resource\.type == "([^"]+)"', term):
                holds &= resource_type == m[1]
            elif m := re.fullmatch(r'resource\.name\.startsWith\("([^"]+)"\)', term):
                holds &= resource_name.startswith(m[1])
            elif m := re.fullmatch(r'resource\.name == "([^"]+)"', term):
                holds &= resource_name == m[1]
            else:
                pytest.fail(f"a condition term the test cannot evaluate: {term}")
        if holds:
            return True
    return False


def _gcp_worker_name(cluster: str, kind: str = "worker") -> str:
    """An instance name as Ray 2.60 gives it on GCP: the node-name tag ("ray-<cluster>-worker"
    from node_launcher.py), a random id of 8 hex digits, the suffix "compute" (node.py)."""
    assert 'TAG_RAY_NODE_NAME: "ray-{}-worker".format(' in _ray_source(
        "autoscaler/_private/node_launcher.py"
    )
    node_py = _ray_source("autoscaler/_private/gcp/node.py")
    assert 'return f"{name_label}-{uuid4().hex[:INSTANCE_NAME_UUID_LEN]}-{node_suffix}"' in node_py
    assert "INSTANCE_NAME_UUID_LEN = 8" in node_py
    return f"ray-{cluster}-{kind}-1a2b3c4d-compute"


def test_gcp_head_manages_only_its_workers_through_conditioned_custom_roles():
    """No predefined compute role on the project: the head's write permissions come from a
    custom role granted under a condition that matches only this cluster's worker instances
    and their boot disks (evaluated against Ray's names); its unconditioned role only reads."""
    text = (CLUSTER / "README.md").read_text()
    config = _launcher("gcp.yaml")
    cluster, zone = config["cluster_name"], config["provider"]["availability_zone"]
    commands = _shell_commands(text)
    words = {word for command in commands for word in command}
    for role in ("roles/compute.instanceAdmin", "roles/compute.admin", "roles/editor"):
        assert not any(role in word for word in words), f"{role} is granted somewhere"
    roles = {
        c[4]: set(_option(c, "--permissions").split(","))
        for c in commands
        if c[:4] == ["gcloud", "iam", "roles", "create"]
    }
    bindings = [c for c in commands if c[:3] == ["gcloud", "projects", "add-iam-policy-binding"]]
    assert bindings, "README: the head's compute roles are not granted"
    conditions = []
    for binding in bindings:
        role = _option(binding, "--role")
        assert role.startswith("projects/$PROJECT/roles/"), (
            f"a predefined role on the project: {role}"
        )
        permissions = roles[role.rsplit("/", 1)[1]]
        reads = {p for p in permissions if p.rsplit(".", 1)[1] == "list"}
        reads |= {"compute.zoneOperations.get"} & permissions
        if permissions - reads:
            source = _option(binding, "--condition-from-file")
            assert source, f"{role} may change instances, granted project-wide without condition"
            condition = json.loads(_heredoc_text(text, source).replace("$PROJECT", "my-project"))
            conditions.append(condition["expression"])
            assert (
                "compute.instances.create" in permissions and "compute.disks.create" in permissions
            )
    assert conditions, "no conditioned grant: the head cannot launch workers"

    worker, head = _gcp_worker_name(cluster), _gcp_worker_name(cluster, "head")
    instance = "compute.googleapis.com/Instance"
    disk = "compute.googleapis.com/Disk"
    project = f"projects/my-project/zones/{zone}"
    for expression in conditions:
        assert _cel_allows(expression, instance, f"{project}/instances/{worker}")
        assert _cel_allows(expression, disk, f"{project}/disks/{worker}")
        refused = [
            (instance, f"{project}/instances/{head}"),
            (instance, f"{project}/instances/prod-db-1"),
            (instance, f"projects/my-project/zones/europe-west4-a/instances/{worker}"),
            (instance, f"projects/other/zones/{zone}/instances/{worker}"),
            (disk, f"{project}/disks/prod-db-1"),
            ("compute.googleapis.com/Firewall", "projects/my-project/global/firewalls/x"),
        ]
        for resource in refused:
            assert not _cel_allows(expression, *resource), f"the condition admits {resource}"
    # The subnet and the worker account: granted on those resources alone.
    (subnet,) = [
        c
        for c in commands
        if c[:5] == ["gcloud", "compute", "networks", "subnets", "add-iam-policy-binding"]
    ]
    assert _option(subnet, "--role") == "roles/compute.networkUser"


def test_gcp_nodes_sit_on_their_own_network_with_ssh_from_your_cidr_only():
    """Not the default network (whose default-allow-ssh opens SSH to the world): a network
    of the cluster's own, whose SSH rule takes the user's CIDR and whose other rule admits
    only the cluster's tagged nodes."""
    text = (CLUSTER / "README.md").read_text()
    config = _launcher("gcp.yaml")
    commands = _shell_commands(text)
    subnets = {
        c[5]: _option(c, "--network")
        for c in commands
        if c[:5] == ["gcloud", "compute", "networks", "subnets", "create"]
    }
    networks, tags = set(), set()
    for key, node in config["available_node_types"].items():
        assert "networkInterfaces" in node["node_config"], f"{key}: on the default network"
        (interface,) = node["node_config"]["networkInterfaces"]
        region = config["provider"]["region"]
        path = re.fullmatch(
            rf"projects/[^/]+/regions/{region}/subnetworks/([^/]+)", interface["subnetwork"]
        )
        assert path and path[1] in subnets, f"{key}: not on the README's subnet: {interface}"
        networks.add(subnets[path[1]])
        tags |= set(node["node_config"]["tags"]["items"])
    assert len(networks) == 1 and "default" not in networks, networks
    assert tags, "no network tags for the firewall rules to target"
    rules = [c for c in commands if c[:4] == ["gcloud", "compute", "firewall-rules", "create"]]
    ssh = [r for r in rules if "tcp:22" in _option(r, "--rules").split(",")]
    assert ssh, "README: no SSH rule"
    for rule in rules:
        assert _option(rule, "--network") in networks, rule
        assert set(_option(rule, "--target-tags").split(",")) <= tags, rule
        sources = _option(rule, "--source-ranges")
        if rule in ssh:
            assert sources == "$SSH_CIDR", f"SSH from {sources}, not from the user's CIDR"
        else:
            assert sources is None and set(_option(rule, "--source-tags").split(",")) <= tags
    (cidr,) = re.findall(r"^SSH_CIDR=(\S+)", text, re.M)
    assert cidr.endswith("/32") and "0.0.0.0" not in cidr, cidr


# -- KubeRay (kuberay.yaml) -----------------------------------------------------------------


def test_kuberay_is_closed_by_default():
    spec = _rayjob()["spec"]
    assert spec["rayClusterSpec"]["authOptions"] == {"mode": "token"}
    (policy,) = [d for d in _kuberay_documents() if d["kind"] == "NetworkPolicy"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    cluster = spec["rayClusterSpec"]
    templates = [
        cluster["headGroupSpec"]["template"],
        *(group["template"] for group in cluster["workerGroupSpecs"]),
        spec["submitterPodTemplate"],
    ]
    for template in templates:
        assert selector.items() <= template["metadata"]["labels"].items()
    packages = yaml.safe_load(spec["runtimeEnvYAML"])["pip"]["packages"]
    project = Requirement(next(p for p in packages if p.startswith("autopeft-ray")))
    assert project.url and project.url.split("#")[0].endswith(".whl")
    assert "#sha256=" in project.url, "pip checks the wheel against its hash"


def test_kuberay_network_policy_pins_the_namespace_and_the_docs_say_who_may_set_the_label():
    """A pod selector alone admits any pod that carries the label: each peer also names its
    namespace (kubernetes.io/metadata.name, which no pod can set), every object sits in that
    one namespace, the operator reaches the dashboard's port only, and the docs say who may
    create pods there (and so set the label)."""
    documents = _kuberay_documents()
    for document in documents:
        assert document["metadata"].get("namespace") == KUBE_NAMESPACE, document["metadata"]
    (policy,) = [d for d in documents if d["kind"] == "NetworkPolicy"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector and policy["spec"]["policyTypes"] == ["Ingress"]
    rules = policy["spec"]["ingress"]
    peers = []
    for rule in rules:
        for peer in rule["from"]:
            assert set(peer) == {"namespaceSelector", "podSelector"}, f"an open peer: {peer}"
            namespace = peer["namespaceSelector"]["matchLabels"]
            assert list(namespace) == ["kubernetes.io/metadata.name"], peer
            assert peer["podSelector"].get("matchLabels"), f"every pod of {namespace}: {peer}"
            peers.append((namespace["kubernetes.io/metadata.name"], peer, rule.get("ports")))
    job = [(ns, p) for ns, p, ports in peers if p["podSelector"]["matchLabels"] == selector]
    assert job == [(KUBE_NAMESPACE, job[0][1])], job
    (_, _, job_ports) = next(x for x in peers if x[1] is job[0][1])
    assert job_ports is None, "the job's pods reach every Ray port"
    for namespace, peer, ports in peers:
        if peer is not job[0][1]:
            assert peer["podSelector"]["matchLabels"] == OPERATOR, peer
            assert ports == [{"protocol": "TCP", "port": 8265}], ports
            assert namespace != KUBE_NAMESPACE

    label = "{}: {}".format(*next(iter(selector.items())))
    readme = (CLUSTER / "README.md").read_text()
    for where, text in (
        ("README.md", readme),
        ("kuberay.yaml", (CLUSTER / "kuberay.yaml").read_text()),
    ):
        assert label in text, f"{where}: does not name the label"
        assert re.search(rf"may create pods in `?{KUBE_NAMESPACE}`?", text), (
            f"{where}: does not say who may set the label"
        )
    # The cloud identities trust the ServiceAccounts of that namespace.
    trust = json.loads(_heredoc_text(readme, "irsa-trust.json"))
    (statement,) = trust["Statement"]
    (subjects,) = [
        v for k, v in statement["Condition"]["StringEquals"].items() if k.endswith(":sub")
    ]
    assert {s.split(":")[2] for s in subjects} == {KUBE_NAMESPACE}, subjects
    assert f".svc.id.goog[{KUBE_NAMESPACE}/$KSA]" in readme


def _quantity(value: str | int) -> float:
    return float(str(value).removesuffix("Gi"))


def test_kuberay_rayjob_has_a_cpu_head_and_an_autoscaled_gpu_group():
    job = _rayjob()
    assert job["apiVersion"] == "ray.io/v1"
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["enableInTreeAutoscaling"] is True

    head = cluster["headGroupSpec"]
    (head_container,) = head["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in head_container["resources"].get("limits", {})
    images = [head_container["image"]]
    groups = cluster["workerGroupSpecs"]
    gpu_groups = []
    for group in groups:
        (container,) = group["template"]["spec"]["containers"]
        images.append(container["image"])
        if _quantity(container["resources"]["limits"].get("nvidia.com/gpu", 0)) >= 1:
            gpu_groups.append(group)
    assert gpu_groups, "no worker group asks for nvidia.com/gpu"
    for group in gpu_groups:
        assert group["minReplicas"] == 0 <= group["replicas"] <= group["maxReplicas"]
        assert group["maxReplicas"] >= 1
    # KubeRay reads rayStartParams as a map of strings.
    for params in [head["rayStartParams"], *(g["rayStartParams"] for g in groups)]:
        assert all(isinstance(v, str) for v in params.values()), params
    _check_images(images)


IDENTITY_ANNOTATIONS = ("eks.amazonaws.com/role-arn", "iam.gke.io/gcp-service-account")


def test_kuberay_pods_reach_the_bucket_through_their_service_accounts():
    """No shared volume: head and worker pods run as ServiceAccounts of this file that carry
    one cloud identity (IRSA on EKS; GKE Workload Identity commented beside it)."""
    text = (CLUSTER / "kuberay.yaml").read_text()
    assert OLD_SHARED not in text and "chmod 777" not in text
    documents = _kuberay_documents()
    assert not [d for d in documents if d["kind"] == "PersistentVolumeClaim"]
    accounts = {d["metadata"]["name"]: d for d in documents if d["kind"] == "ServiceAccount"}
    spec = _rayjob()["spec"]
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]
    workers = [group["template"]["spec"] for group in cluster["workerGroupSpecs"]]
    identities = set()
    for pod in [head, *workers]:
        # No shared volume: the one volume is the lock's ConfigMap, mounted read-only.
        assert [set(volume) for volume in pod.get("volumes", [])] == [{"name", "configMap"}]
        for container in pod["containers"]:
            assert all(mount["readOnly"] is True for mount in container["volumeMounts"])
        # KubeRay expects a ServiceAccount the head's template names to exist already.
        annotations = accounts[pod["serviceAccountName"]]["metadata"]["annotations"]
        (identity,) = [annotations[key] for key in IDENTITY_ANNOTATIONS if key in annotations]
        identities.add(identity)
    assert len(identities) == 1, "one identity, scoped to the bucket"
    # KubeRay binds the autoscaler's Kubernetes permissions to the head's account only.
    assert {w["serviceAccountName"] for w in workers} == {"autopeft-ray-worker"}
    assert head["serviceAccountName"] == "autopeft-ray-head"
    assert "serviceAccountName" not in spec["submitterPodTemplate"]["spec"]
    # The other cloud's annotation is there to swap in.
    commented = re.findall(
        r"#\s*(iam\.gke\.io/gcp-service-account|eks\.amazonaws\.com/role-arn):", text
    )
    assert len(commented) == len(accounts), commented


def test_kuberay_runtime_env_passes_rays_validation_and_installs_the_pins():
    """Every pod installs from the GPU lock (mounted from a ConfigMap) and the wheel, both
    with hashes: pip's hash-checking mode refuses anything else."""
    runtime_env = RuntimeEnv(**yaml.safe_load(_rayjob()["spec"]["runtimeEnvYAML"]))
    pip = runtime_env.pip_config()
    assert "--require-hashes" in pip["pip_install_options"]
    files = [p.removeprefix("-r").strip() for p in pip["packages"] if p.startswith("-r")]
    reqs = [Requirement(p) for p in pip["packages"] if not p.startswith("-r")]
    assert files == [f"/home/ray/lock/{LOCKS['gpu']}"], files
    (project,) = reqs
    assert project.name == _pyproject()["project"]["name"] and "dashboard" in project.extras
    assert project.url and "#sha256=" in project.url
    torch = Version(_lock(LOCKS["gpu"])["torch"].version)
    assert torch == Version(_pinned_version("torch")), "PyPI's build: CUDA 13.0"
    # The file is there on every Ray pod: the ConfigMap the header says how to create.
    cluster = _rayjob()["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"]["spec"]]
    pods += [group["template"]["spec"] for group in cluster["workerGroupSpecs"]]
    for pod in pods:
        volumes = {v["name"]: v["configMap"]["name"] for v in pod["volumes"]}
        for container in pod["containers"]:
            mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
            assert mounts.get(str(Path(files[0]).parent)) == "autopeft-ray-lock", mounts
    text = (CLUSTER / "kuberay.yaml").read_text()
    assert f"kubectl create configmap autopeft-ray-lock -n {KUBE_NAMESPACE} \\" in text
    assert f"--from-file=cluster/{LOCKS['gpu']}" in text


def test_kuberay_entrypoint_reaches_ray_job_submit_as_one_command():
    """KubeRay pastes the entrypoint unquoted after `ray job submit ... --` in a shell
    command: a top-level `;` would end the submission there and run the rest in the
    submitter pod."""
    entrypoint = _rayjob()["spec"]["entrypoint"]
    lexer = shlex.shlex(entrypoint, posix=True, punctuation_chars=True)
    words = list(lexer)
    assert not {";", "&&", "||", "|", "&"} & set(words), words
    assert words[:2] == ["bash", "-c"] and len(words) == 3
    commands = [_parse_search(args) for args in _search_commands(words[2])]
    assert {a.resume for a in commands} == {True, False}
    # The bucket is set once, at the start, and is the run folder of both commands.
    assert words[2].startswith("BUCKET=") and words[2].count("BUCKET=") == 1
    assert {a.output for a in commands} == {"s3://$BUCKET/runs/rte"}
    limits = _rayjob()["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    limits = limits["containers"][0]["resources"]["limits"]
    max_pods = _rayjob()["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["maxReplicas"]
    for args in commands:
        assert args.address == "auto"
        if not args.resume:
            cpus, gpus = _quantity(limits["cpu"]), _quantity(limits["nvidia.com/gpu"])
            _check_fits(args, cpus, gpus, max_pods, "kuberay.yaml")


def _run_entrypoint(run_folder: Path) -> str:
    """The entrypoint's script with the bucket swapped for a local folder (file://, which
    pyarrow resolves the same way) and `exec autopeft-ray` for `echo`: what it would run."""
    (script,) = shlex.split(_rayjob()["spec"]["entrypoint"])[2:]
    script = re.sub(r"OUT=[^;]+;", f"OUT=file://{run_folder};", script, count=1)
    assert script.count("exec autopeft-ray search") == 2, script
    script = script.replace("exec autopeft-ray search", "echo")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    done = subprocess.run(
        ["bash", "-c", script],
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


def test_kuberay_entrypoint_resumes_when_the_run_folder_holds_a_search(tmp_path):
    """The existence check (pyarrow, the same for a bucket) picks resume or a new run."""
    run = tmp_path / "runs" / "rte"
    new = _run_entrypoint(run)
    assert "--resume" not in new and "--task rte" in new, new
    assert new.endswith(f"--output file://{run}")
    run.mkdir(parents=True)
    (run / "search.json").write_text("{}")
    assert _run_entrypoint(run) == f"--address auto --output file://{run} --resume"


# -- Static cluster and the README ----------------------------------------------------------


def test_on_prem_recipe_starts_a_head_joins_workers_and_resumes():
    text = (CLUSTER / "on-prem.md").read_text()
    head = re.search(r"ray start --head[^\n]*", text)
    assert head and "--port 6379" in head[0] and "--dashboard-host 127.0.0.1" in head[0]
    assert "ray start --address HEAD:6379" in text
    installs = _pip_install_commands("\n".join(_code_blocks(text)))
    assert {lock for i in installs for lock in i.locks} == {
        f"cluster/{LOCKS['cpu']}",
        f"cluster/{LOCKS['gpu']}",
    }
    (project,) = [i for i in installs if i.targets]
    assert project.targets == [".[dashboard]"] and "--no-deps" in project.flags
    commands = [_parse_search(args) for args in _search_commands(text)]
    assert {a.resume for a in commands} == {True, False}
    assert all(a.address == "auto" for a in commands)


def _ray_starts(text: str) -> list[dict[str, str | bool]]:
    """The options of every `ray start` in a markdown file's code blocks."""
    starts = []
    for words in _shell_commands(text):
        if words[:2] != ["ray", "start"]:
            continue
        options: dict[str, str | bool] = {}
        rest = words[2:]
        for i, word in enumerate(rest):
            if word.startswith("--"):
                name, equals, value = word.partition("=")
                following = rest[i + 1] if i + 1 < len(rest) else "--"
                options[name] = (
                    value if equals else (True if following.startswith("--") else following)
                )
        starts.append(options)
    return starts


def test_on_prem_uses_object_storage_not_a_shared_file_system():
    """The cluster README says no node mounts a shared file system; on-prem agrees: the run
    folder is a bucket of an S3-compatible store, reached through pyarrow's environment."""
    readme = (CLUSTER / "README.md").read_text()
    assert "no node mounts a shared file system" in readme
    text = (CLUSTER / "on-prem.md").read_text()
    for shared in (r"\bNFS\b", r"/mnt/", r"shared folder", r"all TCP ports"):
        assert not re.search(shared, text), f"on-prem.md: {shared}"
    # Nor does the README send anyone to on-prem.md for a shared file system.
    assert not re.search(r"\bNFS\b", readme), "README.md: NFS"
    commands = [_parse_search(args) for args in _search_commands(text)]
    assert commands and {a.output for a in commands} == {f"s3://${BUCKET_VAR}/runs/rte"}
    exports = [w for c in _shell_commands(text) if c[0] == "export" for w in c[1:]]
    assert f"{BUCKET_VAR}=autopeft-runs" in exports
    assert any(w.startswith("AWS_ENDPOINT_URL=https://") for w in exports), exports


def test_on_prem_firewall_opens_only_rays_pinned_ports_to_the_cluster_subnet():
    """Every port another node connects to is pinned on every `ray start`, the same on all;
    the firewall denies by default and opens exactly those, from the cluster's subnet, and
    SSH from the admin's network; nothing else."""
    text = (CLUSTER / "on-prem.md").read_text()
    starts = _ray_starts(text)
    heads = [s for s in starts if s.get("--head")]
    assert len(heads) == 1 and len(starts) >= 2, starts
    for start in starts:
        missing = [flag for flag in RAY_PORT_FLAGS if not str(start.get(flag, "")).isdigit()]
        assert not missing, f"ray start leaves {missing} to chance: no narrow firewall"
    pinned = {flag: {s[flag] for s in starts} for flag in RAY_PORT_FLAGS}
    assert all(len(values) == 1 for values in pinned.values()), pinned
    ports = {values.pop() for flag, values in pinned.items() if "worker-port" not in flag}
    low, high = (next(iter(pinned[f])) for f in ("--min-worker-port", "--max-worker-port"))
    ports |= {heads[0]["--port"], f"{low}:{high}"}
    assert int(high) - int(low) < 10000, "the worker range is Ray's whole default"

    ufw = [c[c.index("ufw") + 1 :] for c in _shell_commands(text) if "ufw" in c[:2]]
    assert ["default", "deny", "incoming"] in ufw, ufw
    allows = [rule for rule in ufw if rule[0] == "allow"]
    opened = {}
    for rule in allows:
        shape = ["allow", "from", rule[2], "to", "any", "port", rule[6], "proto", "tcp"]
        assert rule == shape, f"not one port from one source: ufw {' '.join(rule)}"
        opened.setdefault(rule[2], set()).add(rule[6])
    assert opened == {"$ADMIN_CIDR": {"22"}, "$CLUSTER_SUBNET": ports}, opened
    (subnet,) = re.findall(r"^CLUSTER_SUBNET=(\S+)", text, re.M)
    assert ipaddress.ip_network(subnet).num_addresses < 2**24, subnet


def test_readme_points_to_every_file_and_names_the_search_metrics():
    text = (CLUSTER / "README.md").read_text()
    files = sorted(p.name for p in CLUSTER.iterdir() if p.name != "README.md")
    configs = ["aws.yaml", "gcp.yaml", "kuberay.yaml", "on-prem.md", *LOCKS.values()]
    assert files == sorted(configs), "no Python here"
    for name in files:
        assert f"]({name})" in text, name
    for metric in ("trials_finished", "hypervolume", "best_score", "suggestion_seconds"):
        assert f"`autopeft_{metric}`" in text
    commands = [_parse_search(args) for args in _search_commands(text)]
    assert commands and all(a.address == "auto" for a in commands)
    assert {a.resume for a in commands} == {True, False}
    for args in commands:
        assert re.fullmatch(rf"(s3|gs)://\${BUCKET_VAR}/runs/rte", args.output), args.output


def _heredoc(text: str, name: str, bucket: str) -> Any:
    """The JSON a `cat > NAME <<EOF` in the README writes, with the bucket variable filled."""
    match = re.search(rf"cat > {re.escape(name)} <<EOF\n(.*?)\nEOF\n", text, re.S)
    assert match, f"README: no {name}"
    return json.loads(match[1].replace(f"${BUCKET_VAR}", bucket))


def test_readme_has_the_bucket_the_scoped_policies_and_no_shared_folder():
    text = (CLUSTER / "README.md").read_text()
    assert OLD_SHARED not in text and "ray rsync-down" not in text
    assert f"export {BUCKET_VAR}=" in text
    for command in (
        f"aws s3 sync s3://${BUCKET_VAR}/runs/rte ./runs/rte",
        f"gcloud storage rsync --recursive gs://${BUCKET_VAR}/runs/rte ./runs/rte",
        f"autopeft-ray report s3://${BUCKET_VAR}/runs/rte --report-dir ./report",
        "tune/tuner.pkl",
    ):
        assert command in text, command

    # AWS: the bucket policy both roles get, exactly the bucket and its objects.
    policy = _heredoc(text, "bucket-policy.json", "b")
    granted: dict[str, set[str]] = {}
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and "Condition" not in statement
        actions = statement["Action"]
        actions = {actions} if isinstance(actions, str) else set(actions)
        granted.setdefault(statement["Resource"], set()).update(actions)
    assert granted == {"arn:aws:s3:::b": S3_BUCKET_ACTIONS, "arn:aws:s3:::b/*": S3_OBJECT_ACTIONS}
    for action in sorted(S3_BUCKET_ACTIONS | S3_OBJECT_ACTIONS):
        assert f"`{action}`" in text, action
    for role in ("autopeft-ray-head", "autopeft-ray-worker"):
        assert role in text and "--policy-name run-folder" in text
    # The head's own policy: EC2 for the cluster, and passing only the worker role.
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    (head,) = [json.loads(b) for b in blocks if "iam:PassRole" in b]
    (pass_role,) = [s for s in head["Statement"] if s["Action"] == "iam:PassRole"]
    assert pass_role["Resource"].endswith(":role/autopeft-ray-worker")
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}
    assert not any(a.startswith("s3:") for s in head["Statement"] for a in s["Action"])

    # GCP and GKE: storage roles granted on the bucket, nothing storage-wide on the project.
    binding = f"gcloud storage buckets add-iam-policy-binding gs://${BUCKET_VAR}"
    assert text.count(binding) >= 2 and "roles/storage.objectAdmin" in text
    assert "gcloud projects add-iam-policy-binding" in text
    for line in re.findall(r"gcloud projects add-iam-policy-binding[^\n]*\n[^\n]*", text):
        assert "storage" not in line, line
    # Kubernetes: the role of the pods' identity trusts exactly the two ServiceAccounts.
    trust = _heredoc(text, "irsa-trust.json", "b")
    (statement,) = trust["Statement"]
    (subjects,) = [
        v for k, v in statement["Condition"]["StringEquals"].items() if k.endswith(":sub")
    ]
    accounts = {
        d["metadata"]["name"] for d in _kuberay_documents() if d["kind"] == "ServiceAccount"
    }
    assert {s.rsplit(":", 1)[1] for s in subjects} == accounts
    assert "roles/iam.workloadIdentityUser" in text
