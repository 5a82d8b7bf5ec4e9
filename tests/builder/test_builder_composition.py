"""SA + PA at the same FFN site: numerical proof of the math in autopeft_ray.builder.composition.

On tiny BERT and RoBERTa models built from a config (6 layers, width 32): the
composition is a property of ``adapters``' layers, not of pretrained weights.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from autopeft_ray.builder import LORA, PA, PT, SA, build_peft_model
from autopeft_ray.builder.composition import enable_parallel_then_serial, is_parallel_then_serial
from autopeft_ray.space import PeftConfiguration

LAYERS = (True, False, True, True, False, True)
ATOL = 1e-5


def _cfg(sa: int = 8, pa: int = 4, pt: int = 2) -> PeftConfiguration:
    return PeftConfiguration(sa, pa, pt, LAYERS)


def _randomise(model: Any, seed: int) -> None:
    """Give every adapter weight (PA's zero-initialised up-projection included) a random value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if any(
                m in name for m in (".adapters.", "prefix_tuning", ".loras.")
            ) or name.startswith("classifier"):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)


def _zero_up(model: Any, adapter: str) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if f".adapters.{adapter}.adapter_up." in name:
                param.zero_()


def _logits(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def _copy_into(reference: Any, source: Any) -> None:
    """Load ``source``'s weights into ``reference``; every reference key must exist in ``source``."""
    src = source.state_dict()
    missing = [k for k in reference.state_dict() if k not in src]
    assert not missing
    reference.load_state_dict({k: src[k] for k in reference.state_dict()})


@pytest.fixture(scope="module", params=["bert", "roberta"])
def model(request: pytest.FixtureRequest, tiny_models: dict[str, str]) -> str:
    return tiny_models[request.param]


@pytest.fixture(scope="module")
def combined(model: str) -> Any:
    built = build_peft_model(model, _cfg(), num_labels=2, seed=0)
    _randomise(built.model, seed=1)
    return built


@pytest.mark.parametrize("with_prefix", [False, True], ids=["no-pt", "pt"])
def test_pa_up_zeroed_equals_sa_only(model: str, batch: dict[str, Any], with_prefix: bool) -> None:
    pt = 2 if with_prefix else 0
    both = build_peft_model(model, _cfg(pt=pt), num_labels=2, seed=0)
    _randomise(both.model, seed=1)
    _zero_up(both.model, PA)
    sa_only = build_peft_model(model, _cfg(pa=0, pt=pt), num_labels=2, seed=5)
    _copy_into(sa_only.model, both.model)
    expected = _logits(sa_only.model, batch)
    assert torch.allclose(_logits(both.model, batch), expected, atol=ATOL)
    # The adapters matter: without the serial adapter the logits move.
    _zero_up(sa_only.model, SA)
    assert not torch.allclose(_logits(sa_only.model, batch), expected, atol=1e-3)


@pytest.mark.parametrize("with_prefix", [False, True], ids=["no-pt", "pt"])
def test_sa_up_zeroed_equals_pa_only(model: str, batch: dict[str, Any], with_prefix: bool) -> None:
    pt = 2 if with_prefix else 0
    both = build_peft_model(model, _cfg(pt=pt), num_labels=2, seed=0)
    _randomise(both.model, seed=1)
    _zero_up(both.model, SA)
    pa_only = build_peft_model(model, _cfg(sa=0, pt=pt), num_labels=2, seed=5)
    _copy_into(pa_only.model, both.model)
    expected = _logits(pa_only.model, batch)
    assert torch.allclose(_logits(both.model, batch), expected, atol=ATOL)
    _zero_up(pa_only.model, PA)
    assert not torch.allclose(_logits(pa_only.model, batch), expected, atol=1e-3)


def _capture_ffn(model: Any, index: int, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """FFN block input x, FFN output F (before residual + LN) and the block output of one layer."""
    output = model.base_model.encoder.layer[index].output
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        output.register_forward_pre_hook(lambda m, args: seen.update(x=args[1])),
        output.dense.register_forward_hook(lambda m, args, out: seen.update(F=out)),
        output.register_forward_hook(lambda m, args, out: seen.update(out=out)),
    ]
    try:
        _logits(model, batch)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def _bottleneck(adapter: Any, z: torch.Tensor) -> torch.Tensor:
    down, up = adapter.adapter_down[0], adapter.adapter_up
    return F.linear(F.relu(F.linear(z, down.weight, down.bias)), up.weight, up.bias)


def _expected(output: Any, x: torch.Tensor, ffn: torch.Tensor) -> torch.Tensor:
    ln = output.LayerNorm

    def norm(z: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(z, ln.normalized_shape, ln.weight, ln.bias, ln.eps)

    if SA not in output.adapters:
        return norm(ffn + x)
    sa, pa = output.adapters[SA], output.adapters[PA]
    assert pa.scaling == 4.0 and sa.scaling == 1.0  # ParBnConfig / SeqBnConfig defaults
    h = ffn + pa.scaling * _bottleneck(pa, x)
    return norm(h + _bottleneck(sa, norm(h + x)) + x)


@pytest.mark.parametrize("index", range(len(LAYERS)))
def test_layer_output_matches_formula(combined: Any, batch: dict[str, Any], index: int) -> None:
    seen = _capture_ffn(combined.model, index, batch)
    output = combined.model.base_model.encoder.layer[index].output
    assert (SA in output.adapters) == LAYERS[index]
    expected = _expected(output, seen["x"], seen["F"])
    assert torch.allclose(seen["out"], expected, atol=ATOL)


def test_stock_stack_drops_the_serial_adapter(model: str, batch: dict[str, Any]) -> None:
    """Documents adapters 1.3.0: Stack("pa", "sa") drops F, Stack("sa", "pa") drops SA.

    If this starts failing, adapters changed its Stack semantics: revisit
    autopeft_ray.builder.composition.
    """
    from adapters.composition import Stack

    built = build_peft_model(model, _cfg(pt=0), num_labels=2, seed=0)
    _randomise(built.model, seed=1)
    net = built.model
    for module in net.modules():
        module.__dict__.pop("compose_stack", None)  # back to the stock composition
    assert not is_parallel_then_serial(net)
    output = net.base_model.encoder.layer[0].output
    sa, pa = output.adapters[SA], output.adapters[PA]

    net.set_active_adapters(Stack(SA, PA))
    seen = _capture_ffn(net, 0, batch)
    ln = output.LayerNorm
    pa_only = ln(seen["F"] + pa.scaling * _bottleneck(pa, seen["x"]) + seen["x"])
    assert torch.allclose(seen["out"], pa_only, atol=ATOL)

    net.set_active_adapters(Stack(PA, SA))
    seen = _capture_ffn(net, 0, batch)
    p = pa.scaling * _bottleneck(pa, seen["x"])
    no_ffn = ln(p + _bottleneck(sa, ln(p + seen["x"])) + seen["x"])
    assert torch.allclose(seen["out"], no_ffn, atol=ATOL)

    net.train()
    net.set_active_adapters(Stack(SA, PA))
    net(**batch).loss.backward()
    assert sa.adapter_up.weight.grad is None


def test_gradients_reach_every_module_and_no_base_weight(model: str, batch: dict[str, Any]) -> None:
    built = build_peft_model(model, _cfg(), num_labels=2, seed=0)
    net = built.model
    net.train()
    net(**batch).loss.backward()
    grads = {n: p.grad for n, p in net.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads.values())
    markers = (f".adapters.{SA}.", f".adapters.{PA}.", f"prefix_tunings.{PT}.", "classifier.")
    # BERT's pooler is part of the task head; RoBERTa's classifier has none.
    pooler = ("pooler.",) if getattr(net.base_model, "pooler", None) is not None else ()
    for marker in (*markers, *pooler):
        assert any(marker in n and g.abs().sum() > 0 for n, g in grads.items()), marker
    for name, param in net.base_model.named_parameters():
        # The pooler belongs to the task head, which trains in every configuration.
        is_module = ".adapters." in name or "prefix_tunings." in name or name.startswith("pooler.")
        assert param.requires_grad == is_module, name
        assert (param.grad is None) != is_module, name


def test_copies_keep_the_composition(combined: Any, batch: dict[str, Any]) -> None:
    expected = _logits(combined.model, batch)
    # (adapters.init gives the model a dynamic class, so pickling a model fails
    # with or without this composition; deep copies work.)
    clone = copy.deepcopy(combined.model)
    assert is_parallel_then_serial(clone)
    output = clone.base_model.encoder.layer[0].output
    assert output.compose_stack.args[0] is output  # bound to the copy, not the original
    assert torch.allclose(_logits(clone, batch), expected, atol=ATOL)
    assert enable_parallel_then_serial(combined.model) == 2 * len(LAYERS)  # idempotent
    assert torch.allclose(_logits(combined.model, batch), expected, atol=ATOL)


@pytest.mark.parametrize(("sa", "pa", "pt"), [(0, 0, 0), (8, 0, 0), (8, 4, 2)], ids=str)
def test_lora_composes_as_its_update_merged_into_query_and_value(
    model: str, batch: dict[str, Any], sa: int, pa: int, pt: int
) -> None:
    """LoRA in the stack acts as W + (alpha / r) B A on the query and value of its layers.

    The same model without LoRA, with that update added to its weights, gives the
    same logits: LoRA composes with the other modules without touching them.
    """
    rank = 4
    with_lora = build_peft_model(
        model, PeftConfiguration(sa, pa, pt, LAYERS, lora_rank=rank), num_labels=2, seed=0
    )
    _randomise(with_lora.model, seed=1)  # B is zero at initialisation: give it a value
    # Without LoRA: the other modules alone (head-only when there are none).
    rest = PeftConfiguration(sa, pa, pt, LAYERS)
    without = build_peft_model(model, rest, num_labels=2, seed=5)
    _copy_into(without.model, with_lora.model)
    with torch.no_grad():
        for index, on in enumerate(LAYERS):
            source = with_lora.model.base_model.encoder.layer[index].attention.self
            target = without.model.base_model.encoder.layer[index].attention.self
            for name in ("query", "value"):
                if not on:
                    assert LORA not in getattr(source, name).loras
                    continue
                lora = getattr(source, name).loras[LORA]
                assert lora.scaling == 1.0  # alpha = r
                getattr(target, name).weight += lora.scaling * lora.lora_B @ lora.lora_A
    expected = _logits(without.model, batch)
    assert torch.allclose(_logits(with_lora.model, batch), expected, atol=ATOL)
    # The update matters: the unmerged model without LoRA gives other logits.
    _copy_into(without.model, with_lora.model)
    assert (_logits(without.model, batch) - expected).abs().max() > 10 * ATOL
