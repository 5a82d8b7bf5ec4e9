"""Can a trial run here? The one place that answers it, before the first trial waits forever.

* :func:`check_gpus`: before Ray starts, GPUs asked for on a machine with none;
* :func:`check_cluster_resources`: once connected, some node (or a node the
  autoscaler can add, :func:`find_autoscaler`) must hold one trial's CPUs and
  GPUs.

The values themselves (``cpus > 0``, GPU fractions) are checked where they are
given, by :func:`autopeft_ray.validation.check_trial_resources`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from autopeft_ray.exceptions import ConfigurationError

#: Where the Ray cluster launcher (``ray up``) leaves its config on the head node.
BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")


def check_gpus(gpus_per_trial: float, address: str | None) -> None:
    """Before Ray starts: fail early when GPUs are asked for on a local machine that has none.

    With an ``address``, the cluster is checked once connected, by
    :func:`check_cluster_resources`.
    """
    if gpus_per_trial <= 0 or address is not None:
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigurationError(
            f"`gpus_per_trial` is {gpus_per_trial!r}, but this machine has no CUDA GPU and no "
            f"cluster `address` was given, so the trials would wait forever. Use "
            f"gpus_per_trial=0, or pass the address of a Ray cluster with GPU nodes."
        )


def check_cluster_resources(cpus_per_trial: float, gpus_per_trial: float) -> None:
    """Once connected to Ray: fail early when no node can ever hold a trial.

    A trial's CPUs and GPUs must fit on one node. When no alive node holds them,
    an autoscaler may still add one (:func:`find_autoscaler`
    says how that is told): then the trials wait for it, with a warning. Without
    one, or when none of its node types is big enough, this raises instead.
    """

    import ray

    request = {"CPU": float(cpus_per_trial), "GPU": float(gpus_per_trial)}
    nodes = alive_node_resources()
    if any(fits(node, request) for node in nodes):
        return
    address = ray.get_runtime_context().gcs_address
    autoscaler = find_autoscaler()
    if autoscaler is not None and (
        autoscaler.node_shapes is None or any(fits(s, request) for s in autoscaler.node_shapes)
    ):
        logging.getLogger(__name__).warning(
            "No node of the Ray cluster at %s has %g CPUs and %g GPUs for a trial yet: the "
            "trials wait until the autoscaler (%s) adds one.",
            address,
            cpus_per_trial,
            gpus_per_trial,
            autoscaler.source,
        )
        return
    most_gpus = max((node.get("GPU", 0.0) for node in nodes), default=0.0)
    if gpus_per_trial > most_gpus:
        field, value, kind, most = "gpus_per_trial", gpus_per_trial, "GPUs", most_gpus
        fix = (
            f"Use gpus_per_trial <= {most_gpus:g} (0 trains on CPUs), or add nodes with GPUs "
            f"(`ray start --address {address} --num-gpus N`, or a cluster/ config whose "
            f"workers have GPUs)."
        )
    else:
        most = max(
            (n.get("CPU", 0.0) for n in nodes if n.get("GPU", 0.0) >= gpus_per_trial), default=0.0
        )
        field, value, kind = "cpus_per_trial", cpus_per_trial, "CPUs"
        fix = (
            f"Use cpus_per_trial <= {most:g}, or add bigger nodes "
            f"(`ray start --address {address} --num-cpus N`)."
        )
    why = (
        "no autoscaler was found that could add one"
        if autoscaler is None
        else f"no node type of the autoscaler ({autoscaler.source}) is that big"
    )
    raise ConfigurationError(
        f"`{field}` is {value!r}, but no node of the Ray cluster at {address} has that many "
        f"{kind} (at most {most:g} on one node) and {why}, so the trials would wait forever. "
        f"{fix}"
    )


@dataclass(frozen=True)
class Autoscaler:
    """An autoscaler seen in the connected Ray cluster.

    Attributes:
        source: where it was seen, for messages.
        node_shapes: the resources of each node type it may add, when the source
            tells them; ``None`` when it runs but what it can add is not visible.
    """

    source: str
    node_shapes: tuple[dict[str, float], ...] | None = None


def alive_node_resources() -> list[dict[str, float]]:
    """Total resources of each alive node of the connected cluster."""
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node["Alive"]]


def find_autoscaler(bootstrap_config: Path = BOOTSTRAP_CONFIG) -> Autoscaler | None:
    """Look for an autoscaler that can add nodes to the connected cluster.

    Ray 2.60 has no public call for this; these are the signals, most precise first:

    1. the cluster config in the GCS, which platforms report and Ray Train and Ray
       Data read for the same purpose: node groups with resources and max count;
    2. ``~/ray_bootstrap_config.yaml``, the cluster launcher's config on the head
       (Ray Tune checks the same file): node types, ``max_workers``, ``resources``;
    3. autoscaler v2 switched on in the GCS (``ray up``'s default since Ray 2.50,
       KubeRay's ``autoscalerOptions.version: v2``): what it can add is not visible;
    4. the v1 autoscaler's status in the GCS (``__autoscaling_status``, written
       every 5 s): with a config it names the config's node types; the read-only
       monitor of a plain ``ray start`` cluster names each node ``node_<id>``.

    Returns:
        ``None`` only when the v1 status shows the read-only monitor and no other
        signal is present: a cluster of fixed nodes. A cluster whose monitor has
        not reported yet, or a v2 monitor without a provider
        (``RAY_enable_autoscaler_v2=1 ray start``), counts as autoscaling.
    """
    from ray._private import ray_constants
    from ray._private.state import state
    from ray.autoscaler.v2.utils import is_autoscaler_v2
    from ray.experimental.internal_kv import _internal_kv_get

    config = state.get_cluster_config()
    if config is not None and config.node_group_configs:
        shapes = tuple(
            {k: float(v) for k, v in group.resources.items()}
            for group in config.node_group_configs
            if group.max_count != 0
        )
        return Autoscaler("the cluster config in the GCS", shapes)
    launcher = _launcher_node_shapes(bootstrap_config.expanduser())
    if launcher is not None:
        return launcher
    if is_autoscaler_v2(fetch_from_server=True):
        return Autoscaler("autoscaler v2 (enabled in the GCS)")
    raw = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
    if not raw:
        return Autoscaler("no autoscaler status in the GCS yet")
    report = json.loads(raw).get("autoscaler_report") or {}
    mapping: dict[str, str] = report.get("node_type_mapping") or {}
    if mapping and all(name == f"node_{node_id}" for node_id, name in mapping.items()):
        return None  # Ray's read-only monitor: it mirrors fixed nodes, launches none
    return Autoscaler(f"autoscaler v1 with node types {sorted(set(mapping.values()))}")


def _launcher_node_shapes(path: Path) -> Autoscaler | None:
    if not path.exists():
        return None
    import yaml

    config = yaml.safe_load(path.read_text()) or {}
    head = config.get("head_node_type")
    types = {k: v for k, v in (config.get("available_node_types") or {}).items() if k != head}
    default_max = config.get("max_workers", 0)
    addable = [t for t in types.values() if t.get("max_workers", default_max) > 0]
    source = f"the cluster launcher's {path}"
    if any("resources" not in t for t in addable):
        return Autoscaler(source)  # resources come from the instance type: not visible here
    shapes = tuple({k: float(v) for k, v in t["resources"].items()} for t in addable)
    return Autoscaler(source, shapes)


def fits(resources: Mapping[str, float], request: Mapping[str, float]) -> bool:
    """Whether one node with ``resources`` holds a trial asking for ``request``."""
    return all(resources.get(k, 0.0) >= v for k, v in request.items() if v > 0)
