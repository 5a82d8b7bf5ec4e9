"""The cluster configurations: Ray's own validation, the project's pins, the documented commands.

Nothing here contacts a cloud or a Kubernetes API. The cluster-launcher configs go through
the offline half of what `ray up` does before it calls the provider (`prepare_config`, then
`validate_config` against Ray's JSON schema). No KubeRay CRD schema ships in any installed
package, so the RayJob is checked field by field against what KubeRay reads; its runtime
environment goes through Ray's own `RuntimeEnv` validation.

The run folder is a bucket on every cloud config (no shared file system): the documented
commands put `--output` on the one bucket variable, and every node's role, service account
or pod identity may read and write that bucket and nothing else.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
import ray
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
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


def _pip_installs(command: str) -> list[list[str]]:
    """What each `pip install` in a shell command line installs, in order."""
    installs = []
    for part in re.split(r";|&&|\|\|", command):
        words = shlex.split(part)
        if words[:2] != ["pip", "install"]:
            continue
        targets, rest = [], iter(words[2:])
        for word in rest:
            if word in ("-e", "--editable"):
                targets.append(next(rest))
            elif word in VALUE_OPTIONS:
                next(rest)
            elif not word.startswith("-"):
                targets.append(word)
        installs.append(targets)
    return installs


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

    installs = [t for command in config["setup_commands"] for t in _pip_installs(command)]
    targets = [target for install in installs for target in install]
    local = [_local_target(t) for t in targets]
    project = [i for i, t in enumerate(local) if t and t[0] in shipped]
    assert project, f"{name}: setup_commands never pip-install the shipped checkout"
    assert "dashboard" in local[project[0]][1], "the dashboard extra brings ray[default]"

    torch = [i for i, t in enumerate(targets) if not local[i] and Requirement(t).name == "torch"]
    assert torch and torch[0] < project[0], f"{name}: install pinned torch before the project"
    assert Requirement(targets[torch[0]]).specifier == SpecifierSet(f"=={_pinned_version('torch')}")
    indexes = {m.group(1) for c in config["setup_commands"] for m in TORCH_INDEX.finditer(c)}
    assert "cpu" in indexes and any(i.startswith("cu") for i in indexes), indexes


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


# -- KubeRay (kuberay.yaml) -----------------------------------------------------------------


def test_kuberay_is_closed_by_default():
    spec = _rayjob()["spec"]
    assert spec["rayClusterSpec"]["authOptions"] == {"mode": "token"}
    (policy,) = [d for d in _kuberay_documents() if d["kind"] == "NetworkPolicy"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert policy["spec"]["ingress"] == [{"from": [{"podSelector": {"matchLabels": selector}}]}]
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
        assert "volumes" not in pod
        assert all("volumeMounts" not in container for container in pod["containers"])
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
    runtime_env = RuntimeEnv(**yaml.safe_load(_rayjob()["spec"]["runtimeEnvYAML"]))
    pip = runtime_env.pip_config()
    reqs = {Requirement(p).name: Requirement(p) for p in pip["packages"]}
    assert reqs["torch"].specifier == SpecifierSet(f"=={_pinned_version('torch')}")
    project = reqs[_pyproject()["project"]["name"]]
    assert project.url and "dashboard" in project.extras
    assert any(TORCH_INDEX.fullmatch(option) for option in pip["pip_install_options"])


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
    assert f"torch=={_pinned_version('torch')}" in text and 'pip install ".[dashboard]"' in text
    commands = [_parse_search(args) for args in _search_commands(text)]
    assert {a.resume for a in commands} == {True, False}
    assert all(a.address == "auto" for a in commands)


def test_readme_points_to_every_file_and_names_the_search_metrics():
    text = (CLUSTER / "README.md").read_text()
    files = sorted(p.name for p in CLUSTER.iterdir() if p.name != "README.md")
    assert files == ["aws.yaml", "gcp.yaml", "kuberay.yaml", "on-prem.md"], "no Python here"
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
