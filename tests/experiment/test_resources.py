"""Can a trial run here: node resources, and what the autoscaler can add."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopeft_ray.experiment.resources import _launcher_node_shapes, fits

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"


def test_fits():
    assert fits({"CPU": 8.0, "GPU": 1.0}, {"CPU": 4, "GPU": 0.5})
    assert not fits({"CPU": 8.0}, {"CPU": 4, "GPU": 0.5})
    assert fits({"CPU": 1.0}, {"CPU": 1, "GPU": 0})


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_launcher_config_tells_which_nodes_the_autoscaler_adds(name):
    """The cluster configs shipped here, read the way a driver on their head reads them."""
    autoscaler = _launcher_node_shapes(CLUSTER / name)
    assert autoscaler is not None and autoscaler.node_shapes is not None
    assert any(fits(shape, {"CPU": 4, "GPU": 0.5}) for shape in autoscaler.node_shapes)
    assert not any(fits(shape, {"GPU": 2}) for shape in autoscaler.node_shapes)


def test_launcher_config_without_resources_leaves_shapes_unknown(tmp_path):
    path = tmp_path / "bootstrap.yaml"
    path.write_text(
        "max_workers: 2\nhead_node_type: head\navailable_node_types:\n"
        "  head: {max_workers: 0, resources: {CPU: 0}}\n"
        "  gpu: {min_workers: 0, max_workers: 2, node_config: {InstanceType: g5.xlarge}}\n"
    )
    autoscaler = _launcher_node_shapes(path)
    assert autoscaler is not None and autoscaler.node_shapes is None
    assert _launcher_node_shapes(tmp_path / "missing.yaml") is None
