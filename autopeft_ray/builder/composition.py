"""A serial and a parallel bottleneck adapter at the same FFN site, done right.

AutoPEFT (arXiv 2301.12132) places, in every selected layer, a
parallel adapter (PA) beside the feed-forward block and a serial adapter (SA)
after it. Stock ``adapters`` 1.3.0 rejects both in one adapter config, so the
builder adds them as separately named adapters (``"sa"``, ``"pa"``) and
activates ``Stack("pa", "sa", "pt")``. What the stock ``Stack`` computes at
the FFN site is wrong for this pair, whatever the order. In
``BottleneckLayer.bottleneck_layer_forward`` of ``BertOutput`` let ``x`` be the
FFN block input (the attention sub-layer output, the residual) and ``F`` the
FFN output before the residual LayerNorm ``LN``. Then:

* ``Stack("sa", "pa")``: ``ParallelAdapter.pre_forward`` replaces the running
  hidden state with ``x``, so the serial adapter's output is discarded; the
  layer returns exactly the PA-only output ``LN(F + p + x)`` and SA gets no
  gradient at all.
* ``Stack("pa", "sa")``: after PA the running state is ``p`` alone; SA's
  ``pre_forward`` and ``post_forward`` never see ``F`` again, so the layer
  returns ``LN(p + SA(LN(p + x)) + x)``: the pretrained FFN output is dropped.

The composition installed here computes, for the adapters' own settings
(``ParBnConfig``: ReLU, scaling ``s = 4``; ``SeqBnConfig``, Pfeiffer placement:
ReLU, adapter input after the original LayerNorm, adapter residual before it)::

    p   = s * up_PA(relu(down_PA(x)))         # parallel branch reads the FFN input x
    h   = F + p                               # ... and is added to the FFN output
    a   = up_SA(relu(down_SA(LN(h + x))))     # serial adapter acts on h (Pfeiffer:
                                              #   its bottleneck reads LN(h + x))
    out = LN(h + a + x)                       # original residual + LayerNorm, once

With ``p = 0`` this is exactly the stock SA-only (``SeqBnConfig``) layer, and
with ``a = 0`` exactly the stock PA-only (``ParBnConfig``) layer. Layers that
hold only one of the two adapters, and stacks holding nested composition
blocks, go through the stock ``compose_stack`` unchanged.

The original AutoPEFT code (its adapter-transformers 3.1 fork,
``modeling_sappa.py``) fed the serial bottleneck ``LN(F + x)``, without ``p``,
and returned ``LN(F + p + up_SA(relu(down_SA(LN(F + x)))) + x)``: the two
branches were side by side rather than serial. Here the serial adapter acts on
the output of the FFN block, parallel branch included.

The patch is per model instance (no class of ``adapters`` is modified) and
depends on ``adapters`` and ``torch`` only, so a user who loads saved adapters
with plain ``adapters`` can copy this module to get the same function.
"""

from __future__ import annotations

import functools
from typing import Any

#: Attribute set on each patched layer; its value is the bound composition.
_PATCH_ATTRIBUTE = "compose_stack"


def compose_parallel_then_serial(layer: Any, adapter_setup: Any, state: Any, lvl: int = 0) -> Any:
    """``compose_stack`` replacement for one ``BottleneckLayer`` (see module docstring).

    Args:
        layer: the ``adapters`` ``BottleneckLayer`` holding the adapters.
        adapter_setup: the active ``Stack``.
        state: the ``BottleneckState`` (``hidden_states`` = ``F``, ``input_tensor`` = ``x``).
        lvl: composition depth, passed through.

    Returns:
        The state after all adapters; its ``last`` names a serial adapter, whose
        ``post_forward`` adds the residual ``x`` and applies ``LN`` once.
    """
    from adapters.methods.adapter_layer_base import ComposableAdapterLayerBase
    from adapters.methods.modeling import ParallelAdapter

    children = list(adapter_setup)
    present = [c for c in children if isinstance(c, str) and c in layer.adapters]
    parallel = [c for c in present if isinstance(layer.adapters[c], ParallelAdapter)]
    serial = [c for c in present if c not in parallel]
    nested = any(not isinstance(c, str) for c in children)
    if nested or not parallel or not serial:
        # One kind only: the stock Stack is correct (see module docstring).
        return ComposableAdapterLayerBase.compose_stack(layer, adapter_setup, state, lvl)

    ffn_output = state.hidden_states
    for name in parallel:
        branch = layer.compose_single(name, layer.pre_block(name, state), lvl=lvl + 1)
        ffn_output = ffn_output + branch.hidden_states
    state = state._replace(hidden_states=ffn_output, bottleneck_up=None)
    for name in serial:
        state = layer.pre_block(name, state)
        state = layer.compose_single(name, state, lvl=lvl + 1)
    return state


def enable_parallel_then_serial(model: Any) -> int:
    """Install :func:`compose_parallel_then_serial` on every bottleneck layer of ``model``.

    Idempotent. The ``functools.partial`` stored on each layer is deep-copied
    with it, so a copy of the model composes with its own adapters.

    Args:
        model: a model prepared with ``adapters.init``.

    Returns:
        The number of bottleneck layers patched.
    """
    from adapters.methods.bottleneck import BottleneckLayer

    patched = 0
    for module in model.modules():
        if isinstance(module, BottleneckLayer):
            module.__dict__[_PATCH_ATTRIBUTE] = functools.partial(
                compose_parallel_then_serial, module
            )
            patched += 1
    return patched


def is_parallel_then_serial(model: Any) -> bool:
    """True when every bottleneck layer of ``model`` uses the corrected composition."""
    from adapters.methods.bottleneck import BottleneckLayer

    layers = [m for m in model.modules() if isinstance(m, BottleneckLayer)]
    return bool(layers) and all(
        isinstance(getattr(m, _PATCH_ATTRIBUTE, None), functools.partial) for m in layers
    )
