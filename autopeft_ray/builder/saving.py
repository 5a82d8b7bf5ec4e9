"""Save what was trained so that plain ``adapters`` can load it, and load it back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from autopeft_ray.exceptions import invalid_value
from autopeft_ray.space.support import quiet_activation_warning

from .build import BuiltModel, task_head_parameters
from .composition import enable_parallel_then_serial
from .setup import (
    FULL,
    HEAD_ONLY,
    PARALLEL_THEN_SERIAL,
    active_stack,
    use_eager_attention,
)

#: Files written by :func:`save_adapters` next to the adapter folders.
SETUP_FILE = "autopeft_setup.json"
HEAD_FILE = "task_head.safetensors"


def save_adapters(built: BuiltModel, directory: str | os.PathLike[str]) -> Path:
    """Save what was trained so that plain ``adapters`` can load it (see :func:`load_adapters`).

    Writes one folder per adapter (``model.save_all_adapters``), or
    ``model/`` (``save_pretrained``) for full fine-tuning, plus
    ``task_head.safetensors`` (the trained task head, pooler included, which
    ``adapters``' own head saving leaves out because the pooler sits in the
    base model; empty for a causal LM, whose head is the pretrained one) and
    ``autopeft_setup.json`` (:func:`adapter_setup_dict`).
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    net, composition = built.model, built.setup["composition"]
    if composition == FULL:
        net.save_pretrained(str(out / "model"))
    else:
        from safetensors.torch import save_file

        if composition != HEAD_ONLY:
            net.save_all_adapters(str(out))
        save_file(_task_head_state(net), str(out / HEAD_FILE))
    (out / SETUP_FILE).write_text(json.dumps(built.setup, indent=2) + "\n")
    return out


def load_adapters(model: Any, directory: str | os.PathLike[str]) -> Any:
    """Load a :func:`save_adapters` folder into a fresh model of the same base model and kind.

    ``model`` is a sequence classifier (for a decoder, with the ``pad_token_id``
    it was trained with) or a causal LM, as the saved one was. A decoder
    whose setup holds a prefix is switched to eager attention, as it trained.

    Uses plain ``adapters`` calls (``load_adapter``, ``set_active_adapters``)
    plus :func:`~autopeft_ray.builder.composition.enable_parallel_then_serial` when the
    setup holds both bottlenecks, and loads the task head with
    ``model.load_state_dict(safetensors.torch.load_file(HEAD_FILE), strict=False)``.
    Returns the active composition block.
    """
    import adapters
    from safetensors.torch import load_file

    folder = Path(directory)
    if not (folder / SETUP_FILE).is_file():
        raise invalid_value(
            "directory", str(folder), expected=f"a folder written by save_adapters ({SETUP_FILE})"
        )
    setup = json.loads((folder / SETUP_FILE).read_text())
    if setup["composition"] == FULL:
        raise invalid_value(
            "directory",
            str(folder),
            expected="saved adapters",
            fix=f"Full fine-tuning saved a whole model: from_pretrained('{folder / 'model'}').",
        )
    use_eager_attention(model, setup)  # a decoder's prefixes need it (setup.py)
    adapters.init(model)
    loaded = model.load_state_dict(load_file(str(folder / HEAD_FILE)), strict=False)
    if loaded.unexpected_keys:
        raise invalid_value(
            "directory",
            str(folder),
            expected="a task head of this model's architecture",
            fix=f"Load it into the base model it was trained on (unexpected: {loaded.unexpected_keys[:3]}).",
        )
    for name in setup["active"]:
        model.load_adapter(str(folder / name), load_as=name)
    if setup["composition"] == PARALLEL_THEN_SERIAL:
        enable_parallel_then_serial(model)
    active = active_stack(setup)
    with quiet_activation_warning():
        model.set_active_adapters(active)
    return active


def _task_head_state(model: Any) -> dict[str, Any]:
    head = {id(p) for p in task_head_parameters(model)}
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if id(p) in head}
