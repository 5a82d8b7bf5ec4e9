"""No network and no HF_HUB_OFFLINE: one short probe of the hub, then offline at once.

Every test here runs without a network: the hub's endpoint is a closed local port
(connections refused), and a call that reached the real hub would hang in retries.
"""

from __future__ import annotations

import os
import time

import pytest

from autopeft_ray import network
from autopeft_ray.cli import main


@pytest.fixture
def no_offline_flags(monkeypatch):
    """No offline switch in the environment or in the imported libraries (all restored after)."""
    import datasets.config
    import huggingface_hub.constants
    import transformers.utils.hub

    for name in network.OFFLINE_VARIABLES:
        monkeypatch.setenv(name, "")  # so that the value before is put back
        monkeypatch.delenv(name)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)
    monkeypatch.setattr(transformers.utils.hub, "_is_offline_mode", False, raising=False)
    monkeypatch.setattr(network, "_unreachable", None)


@pytest.fixture
def unreachable_hub(no_offline_flags, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: closed


@pytest.mark.parametrize("task", ["sst2", "sst-2-mistyped"])
def test_no_network_fails_in_seconds_naming_hf_hub_offline(unreachable_hub, task, tmp_path, capsys):
    """A hub task and a mistyped name (tried as a hub dataset) used to wait 25-40 s in the
    hub's retries before the message; now one probe, and the message says HF_HUB_OFFLINE=1."""
    started = time.monotonic()
    assert main(["search", "--task", task, "--output", str(tmp_path / "run")]) == 2
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert elapsed < 15, f"{elapsed:.1f} s"
    assert "HF_HUB_OFFLINE=1" in err and "http://127.0.0.1:9" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"
    assert not (tmp_path / "run").exists()


def test_a_hub_model_is_probed_once_then_offline(unreachable_hub, monkeypatch):
    from autopeft_ray.exceptions import ModelLoadError
    from autopeft_ray.models import load_config, load_tokenizer

    probes = []
    real = network.can_connect
    monkeypatch.setattr(network, "can_connect", lambda *a, **k: probes.append(a) or real(*a, **k))
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match=r"did not answer within 3 s.*HF_HUB_OFFLINE=1"):
        load_config("someone/some-model")
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE=1"):
        load_tokenizer("someone/some-model")
    assert time.monotonic() - started < 10
    assert probes == [("127.0.0.1", 9)], "one probe per process, of the endpoint"


def test_nothing_is_probed_offline_or_without_a_hub_call(no_offline_flags, monkeypatch):
    """Not for the offline default model and task, nor when a switch is already set."""
    from autopeft_ray.models import DEFAULT_MODEL, load_config
    from autopeft_ray.tasks import load_task

    def probe(*args, **kwargs):
        raise AssertionError("the hub was probed")

    monkeypatch.setattr(network, "can_connect", probe)
    assert load_config(DEFAULT_MODEL).model_type == "bert"
    assert len(load_task("pang_lee_polarity")["train"]) > 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert network.ensure_hub() is False
    assert (
        "HF_HUB_OFFLINE" in network.offline_hint()
        and "did not answer" not in network.offline_hint()
    )


def test_the_probe_goes_to_the_proxy_when_one_is_set(monkeypatch):
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert network._probe_target("https://huggingface.co") == ("proxy.example", 3128)
    monkeypatch.delenv("https_proxy")
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    assert network._probe_target("https://hub.example:8443") == ("hub.example", 8443)
    assert network._probe_target("http://127.0.0.1:9") == ("127.0.0.1", 9)
