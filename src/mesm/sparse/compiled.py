"""Python side of the compiled sparse ops (``torch.ops.mesm.*``, see :mod:`mesm.sparse.engine`).

Registers, once the extension is loaded, each op's autograd formula (its backward is itself one
compiled op), its FLOP formula for ``FlopCounterMode`` and a fake (meta) kernel for
``torch.compile``. The ops take tensors already in the dtype autocast would compute in (the
callers in :mod:`mesm.sparse.conv` decide it), so autocast passes them through unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

_registered: list[bool] = []


def _conv_setup(ctx, inputs, output) -> None:
    features, nbr, weight, bias, relu, dtype = inputs
    if relu:
        raise RuntimeError("mesm::subm_conv3x3 with relu=True has no backward; apply F.relu")
    ctx.save_for_backward(features, nbr, weight)
    ctx.dtype = dtype
    ctx.bias_dtype = None if bias is None else bias.dtype


def _conv_backward(ctx, grad: Tensor):
    features, nbr, weight = ctx.saved_tensors
    needs = ctx.needs_input_grad
    mask = [needs[0], needs[2], needs[3]]
    gf, gw, gb = torch.ops.mesm.subm_conv3x3_backward(grad, features, nbr, weight, ctx.dtype, mask)
    return (
        gf if mask[0] else None,
        None,
        gw if mask[1] else None,
        gb.to(ctx.bias_dtype) if mask[2] else None,
        None,
        None,
    )


def _nucleus_setup(ctx, inputs, output) -> None:
    scores, coords, num_samples, _ = inputs
    ctx.save_for_backward(output[0], coords)
    ctx.num_samples = num_samples
    ctx.scores_dtype = scores.dtype


def _nucleus_backward(ctx, grad_probs: Tensor, _grad_keep: Tensor | None, _grad_index=None):
    probs, coords = ctx.saved_tensors
    if grad_probs is None:
        return None, None, None, None
    grad = torch.ops.mesm.segment_softmax_backward(grad_probs, probs, coords, ctx.num_samples)
    return grad.to(ctx.scores_dtype), None, None, None


def _window_setup(ctx, inputs, output) -> None:
    features, _, with_source = inputs
    if not with_source:
        raise RuntimeError("mesm::window_max needs with_source=True for its backward")
    ctx.save_for_backward(output[1])
    ctx.num_rows = features.shape[0]


def _window_backward(ctx, grad: Tensor, _grad_source: Tensor | None):
    (source,) = ctx.saved_tensors
    return torch.ops.mesm.window_max_backward(grad, source, ctx.num_rows), None, None


def _conv_flops(features_shape, nbr_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    # A 2-D weight is the (C_out, 9·C_in) GEMM operand.
    width = weight_shape[1] if len(weight_shape) == 2 else 9 * weight_shape[1]
    return 2 * nbr_shape[0] * width * weight_shape[0]


def _scores_flops(features_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    # W_x x for every site, then the score v · tanh(...): the two GEMMs the torch path runs.
    n, a = features_shape[0], weight_shape[0]
    return 2 * n * features_shape[1] * a + 2 * n * a


def _conv_backward_flops(
    grad_shape, features_shape, nbr_shape, weight_shape, dtype, output_mask, *a, **k
) -> int:
    one = 2 * nbr_shape[0] * 9 * weight_shape[1] * weight_shape[0]
    return one * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def _fakes() -> None:
    lib = "mesm::"

    @torch.library.register_fake(lib + "rulebook3x3")
    def _(coords, num_samples, height, width):
        n = coords.shape[0]
        table = coords.new_empty((num_samples, height + 2, width + 2), dtype=torch.long)
        return table, coords.new_empty((n, 9), dtype=torch.long)

    @torch.library.register_fake(lib + "subm_conv3x3")
    def _(features, nbr, weight, bias, relu, dtype):
        return features.new_empty((nbr.shape[0], weight.shape[0]), dtype=dtype)

    @torch.library.register_fake(lib + "subm_conv3x3_backward")
    def _(grad, features, nbr, weight, dtype, mask):
        return (
            torch.empty_like(features),
            torch.empty_like(weight),
            weight.new_empty(weight.shape[0]),
        )

    @torch.library.register_fake(lib + "pool2x2_rulebook")
    def _(coords, table, num_samples, height, width):
        m = torch.library.get_ctx().new_dynamic_size()
        return coords.new_empty((m, 3)), coords.new_empty((m, 4), dtype=torch.long)

    @torch.library.register_fake(lib + "window_max")
    def _(features, window, with_source):
        m, c = window.shape[0], features.shape[1]
        return features.new_empty((m, c)), features.new_empty(
            (m if with_source else 0, c), dtype=torch.long
        )

    @torch.library.register_fake(lib + "window_max_backward")
    def _(grad, source, num_rows):
        return grad.new_empty((num_rows, grad.shape[1]))

    @torch.library.register_fake(lib + "additive_scores")
    def _(features, weight, frame_term, coords, v):
        return features.new_empty((features.shape[0],))

    @torch.library.register_fake(lib + "nucleus")
    def _(scores, coords, num_samples, p):
        dtype = torch.float64 if scores.dtype == torch.float64 else torch.float32
        kept = torch.library.get_ctx().new_dynamic_size()
        return (
            scores.new_empty(scores.shape, dtype=dtype),
            scores.new_empty(scores.shape, dtype=torch.bool),
            scores.new_empty((kept,), dtype=torch.long),
        )

    @torch.library.register_fake(lib + "segment_softmax_backward")
    def _(grad, probs, coords, num_samples):
        return torch.empty_like(probs)


def register() -> None:
    """Registers the Python parts of the ops (once; the library must be loaded)."""
    if _registered:
        return
    ops = torch.ops.mesm
    torch.library.register_autograd("mesm::subm_conv3x3", _conv_backward, setup_context=_conv_setup)
    torch.library.register_autograd(
        "mesm::nucleus", _nucleus_backward, setup_context=_nucleus_setup
    )
    torch.library.register_autograd(
        "mesm::window_max", _window_backward, setup_context=_window_setup
    )
    register_flop_formula(ops.subm_conv3x3)(_conv_flops)
    register_flop_formula(ops.subm_conv3x3_backward)(_conv_backward_flops)
    register_flop_formula(ops.additive_scores)(_scores_flops)
    _fakes()
    _registered.append(True)
