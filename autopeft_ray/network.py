"""What this machine can reach: the Hugging Face hub, probed once before the first hub call.

Without a network and without ``HF_HUB_OFFLINE``, ``datasets`` and
``transformers`` retry each hub request for 25-40 s before they fail. So a path
that needs the hub (a hub task or model, your own data by hub name) first opens
one connection to the hub's endpoint (``HF_ENDPOINT``, else huggingface.co; its
proxy when one is set), for at most :data:`HUB_PROBE_SECONDS`. When that fails
the process turns offline, as ``HF_HUB_OFFLINE=1`` would: the hub cache and local
files still load, and the error of anything else says why, at once.
:func:`offline_hint` is that sentence. Nothing is probed with ``HF_HUB_OFFLINE``
(or ``HF_DATASETS_OFFLINE``, ``TRANSFORMERS_OFFLINE``) set, nor for the offline
default model and tasks, which never call the hub.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import urllib.parse
import urllib.request

#: Longest wait for the hub to accept a connection (DNS lookup included).
HUB_PROBE_SECONDS = 3.0
#: The switches that make the Hugging Face libraries offline.
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUE = ("1", "ON", "YES", "TRUE")

#: The endpoint this process found unreachable (and went offline for), if any.
_unreachable: str | None = None


def can_connect(host: str, port: int, timeout: float) -> bool:
    """Whether ``host:port`` accepts a TCP connection within ``timeout`` seconds.

    The lookup of the name runs in a thread too: a resolver without a network
    can block for longer than the socket's own timeout.
    """
    outcome: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(True)
        except (OSError, ValueError):
            outcome.append(False)

    thread = threading.Thread(target=connect, name="autopeft-ray-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(outcome and outcome[0])


def offline_is_set() -> bool:
    """Whether the environment makes the Hugging Face libraries offline."""
    return any(os.environ.get(name, "").upper() in _TRUE for name in OFFLINE_VARIABLES)


def hub_endpoint() -> str:
    """The hub's address, as ``huggingface_hub`` reads it."""
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _probe_target(endpoint: str) -> tuple[str, int]:
    """``(host, port)`` a request to ``endpoint`` connects to first: its proxy, if one is set."""
    url = urllib.parse.urlsplit(endpoint)
    host = url.hostname or ""
    proxy = urllib.request.getproxies().get(url.scheme or "https")
    if proxy and not urllib.request.proxy_bypass(host):
        through = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return through.hostname or "", through.port or 80
    return host, url.port or (80 if url.scheme == "http" else 443)


def ensure_hub() -> bool:
    """Before a call that needs the hub: True if it may be called, else this process is offline.

    Probes the hub once per process (:data:`HUB_PROBE_SECONDS` at most); when it
    does not answer, sets ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` for this
    process (and the Ray workers it starts) and in the libraries already imported.
    """
    global _unreachable
    if offline_is_set():
        return False
    endpoint = hub_endpoint()
    if can_connect(*_probe_target(endpoint), timeout=HUB_PROBE_SECONDS):
        return True
    _unreachable = endpoint
    go_offline()
    return False


def go_offline() -> None:
    """Make this process offline, as ``HF_HUB_OFFLINE=1`` set before it started would."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    # The libraries read the switch once, when imported.
    for module, names in (
        ("huggingface_hub.constants", ("HF_HUB_OFFLINE",)),
        ("datasets.config", ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")),
        ("transformers.utils.hub", ("_is_offline_mode",)),
    ):
        imported = sys.modules.get(module)
        for name in names:
            if imported is not None and hasattr(imported, name):
                setattr(imported, name, True)


def offline_hint() -> str:
    """A sentence for an error of a hub call: why it was offline, or ``""`` when it was not."""
    if _unreachable is not None:
        return (
            f" The hub ({_unreachable}) did not answer within {HUB_PROBE_SECONDS:g} s, so this "
            f"run is offline, as with HF_HUB_OFFLINE=1 (set it to skip the check): only local "
            f"files and the hub cache load."
        )
    if offline_is_set():
        return " HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set, so only local files and the hub cache load."
    return ""
