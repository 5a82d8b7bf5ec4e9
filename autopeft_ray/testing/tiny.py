"""Tiny models built from a config with random weights: real architectures, no download.

Tests of the builder, the cost, the presets and the training loop need a real
``transformers`` model that ``adapters`` can wrap, not a pretrained one: a
few layers of width 32 build, train and save in milliseconds. Each checkpoint
is saved with ``save_pretrained`` beside the offline default model's
tokenizer (its vocabulary size is the model's), so that it loads by path
wherever a model name is taken, data preparation included.

Decoders (GPT-2, Llama, Mistral) are saved as causal LMs (``AutoModelForCausalLM``)
with the same tokenizer, a stand-in: no decoder tokenizer ships offline. Their
pad, begin and end ids are that tokenizer's ``[PAD]`` 0, ``[CLS]`` 101 and
``[SEP]`` 102 (its ``bos_token`` and ``eos_token``, set for them). Llama and Mistral use grouped-query attention (4 query heads,
2 key/value heads) and untied embeddings, GPT-2 tied ones, as their real
checkpoints do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autopeft_ray.exceptions import invalid_value
from autopeft_ray.space.support import DECODER_FAMILIES

#: Encoder families a tiny checkpoint can be built for.
ENCODER_FAMILIES = ("bert", "roberta")
#: Families a tiny checkpoint can be built for; decoders are saved as causal LMs.
FAMILIES = ENCODER_FAMILIES + DECODER_FAMILIES
#: The stand-in tokenizer's ids: [PAD] 0, [CLS] 101, [SEP] 102.
_SPECIAL_IDS = {"pad_token_id": 0, "bos_token_id": 101, "eos_token_id": 102}


def tiny_config(
    family: str = "bert", *, num_layers: int = 3, hidden_size: int = 32, vocab_size: int = 30522
) -> Any:
    """A ``transformers`` config of a tiny model of ``family``: 4 heads, FFN twice the width.

    Llama and Mistral have 2 key/value heads (grouped-query attention).
    """
    from transformers import BertConfig, GPT2Config, LlamaConfig, MistralConfig, RobertaConfig

    shape = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": 4,
        "intermediate_size": 2 * hidden_size,
        "max_position_embeddings": 130,
    }
    if family == "bert":
        return BertConfig(**shape)
    if family == "roberta":
        return RobertaConfig(**shape, **_SPECIAL_IDS)
    if family == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size,
            n_embd=hidden_size,
            n_layer=num_layers,
            n_head=4,
            n_inner=2 * hidden_size,
            n_positions=130,
            **_SPECIAL_IDS,
        )
    if family in ("llama", "mistral"):
        config = LlamaConfig if family == "llama" else MistralConfig
        return config(**shape, num_key_value_heads=2, tie_word_embeddings=False, **_SPECIAL_IDS)
    raise invalid_value("family", family, valid=FAMILIES)


def tiny_checkpoint(
    folder: str | Path,
    family: str = "bert",
    *,
    num_layers: int = 3,
    hidden_size: int = 32,
    seed: int = 0,
) -> str:
    """Save a randomly initialised ``family`` base model (and a tokenizer) in ``folder``.

    Args:
        folder: where to save (created).
        family: one of ``FAMILIES``.
        num_layers, hidden_size: the model's shape.
        seed: seeds the random weights.

    Returns:
        ``folder``, to pass as ``model`` wherever a checkpoint is taken.
    """
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    from autopeft_ray.models import DEFAULT_MODEL, resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))
    if family in DECODER_FAMILIES:  # begin and end a sequence as the config says
        tokenizer.bos_token, tokenizer.eos_token = tokenizer.cls_token, tokenizer.sep_token
    config = tiny_config(
        family, num_layers=num_layers, hidden_size=hidden_size, vocab_size=len(tokenizer)
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        auto = AutoModelForCausalLM if family in DECODER_FAMILIES else AutoModel
        model = auto.from_config(config)
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)
