"""Cross-modal additive attention from the text feature to spatial sites, and top-p selection.

MESM (Dai et al. 2021, section 3.2) scores every spatial position of every frame/chunk against the
text feature ``y`` with Bahdanau attention, normalises per frame, and keeps the nucleus: the
smallest set of positions whose probability mass reaches p. The CNN stage that follows computes
only on those positions.

Differences from the paper's reference code: p >= 1 keeps every site (there, p = 1.0 crashed
because a float cumulative sum never quite reaches 1), ties are broken by position, and a
"gated" mode lets the attention receive gradients (see :class:`CrossModalAttention`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mesm.models.config import check_p
from mesm.sparse import SparseMap, compute_dtype, linear, sparse_scale
from mesm.sparse.engine import compiled_ops


def top_p_mask(probs: Tensor, p: float, valid: Tensor | None = None) -> Tensor:
    """Nucleus selection per row.

    Sorts each row descending (stable: among equal probabilities the lower index comes first)
    and keeps the shortest prefix whose sum reaches p. The first position is always kept.

    Args:
        probs: (F, M) probabilities; each row sums to 1 over its valid entries.
        p: mass to keep; p >= 1 keeps every valid entry.
        valid: (F, M) bool, False for padding (never kept); all valid when None.

    Returns:
        (F, M) bool mask of kept entries.
    """
    if valid is None:
        valid = torch.ones_like(probs, dtype=torch.bool)
    if p >= 1.0:
        return valid.clone()
    # float64 throughout (bf16/fp16 probabilities included): the running sum must not drift
    # below p, and the order must not gain ties that the probabilities themselves do not have.
    masked = probs.double().masked_fill(~valid, -1.0)  # padding sorts last
    ordered, order = torch.sort(masked, dim=1, descending=True, stable=True)
    ordered = ordered.clamp_min(0)
    mass_before = torch.cumsum(ordered, dim=1) - ordered
    keep_sorted = mass_before < p
    keep = torch.zeros_like(keep_sorted).scatter(1, order, keep_sorted)
    return keep & valid


def _segment_layout(sample: Tensor, num_samples: int) -> tuple[Tensor, int]:
    """Position of each site inside its sample and the largest sample size (sites sorted)."""
    counts = torch.bincount(sample, minlength=num_samples)
    starts = torch.cumsum(counts, 0) - counts
    position = torch.arange(sample.numel(), device=sample.device) - starts[sample]
    return position, int(counts.max()) if counts.numel() else 0


class AttentionCapture(nn.Module):
    """The named place where attention probabilities pass (hook it to record them).

    A forward hook receives ``(probs, keep, sites)``: (N,) probabilities, (N,) bool kept mask and
    the :class:`SparseMap` of scored sites (coordinates give frame, row and column).
    """

    def forward(self, probs: Tensor, keep: Tensor, sites: SparseMap) -> Tensor:
        return probs


class NucleusMass:
    """The nucleus mass p that every attention layer of one model reads at forward time.

    One object per model, shared by all its :class:`CrossModalAttention` layers, so that p has
    one owner: changing it here (``MESM.set_p``) changes what every layer keeps, and everything
    that reports "the p used" reads it back from here.
    """

    def __init__(self, value: float) -> None:
        self.value = check_p(value)

    def __repr__(self) -> str:
        return f"NucleusMass({self.value})"


class CrossModalAttention(nn.Module):
    """Additive attention from the text feature to the active sites of each frame, then top-p.

    score(x, y) = v · tanh(W_x x + W_y y); softmax over the sites of each frame/chunk.

    Args:
        in_channels: C, channels of the feature map being scored.
        text_dim: D, width of the text feature.
        attention_dim: hidden width A of the additive attention.
        p: the model's shared :class:`NucleusMass` (p is checked once, where it is made).
        gating: "none" keeps features unscaled (the paper: the selection is not differentiable,
            so these layers receive no gradient); "gated" multiplies each kept site by its
            probability divided by the largest probability in its frame (in (0, 1], 1 for the
            most attended site), so the attention is trained by the task loss.
    """

    def __init__(
        self,
        in_channels: int,
        text_dim: int,
        attention_dim: int,
        p: NucleusMass,
        gating: str = "none",
    ) -> None:
        super().__init__()
        self.proj_x = nn.Linear(in_channels, attention_dim)
        self.proj_y = nn.Linear(text_dim, attention_dim, bias=False)
        self.score = nn.Linear(attention_dim, 1, bias=False)
        self.nucleus = p
        self.gating = gating
        self.capture = AttentionCapture()
        if gating == "none":
            # The selection is not differentiable: these weights never get a gradient. Saying
            # so lets DDP train MESM (it waits for a gradient of every parameter that requires
            # one, and fails on unused ones); optimisers skipped them anyway.
            self.requires_grad_(False)

    @property
    def p(self) -> float:
        """The nucleus mass this layer keeps (read from its :class:`NucleusMass`)."""
        return self.nucleus.value

    def _recorded(self) -> bool:
        # Hooks on `capture` (attention maps, analysis) need the probabilities even at p >= 1.
        return bool(self.capture._forward_hooks or self.capture._forward_pre_hooks)

    def _scores_need_grad(self) -> bool:
        """Only gated attention passes a gradient to the scores: with ``gating="none"`` (the
        paper) the selection is not differentiable, so the scores are computed without autograd
        in training too (the same numbers, no graph to build)."""
        return self.gating == "gated" and torch.is_grad_enabled()

    def _frame_term(self, y: Tensor) -> Tensor:
        """(F, A) W_y y + b_x: the part of each frame's pre-activation shared by its sites."""
        per_frame = self.proj_y(y)
        return per_frame if self.proj_x.bias is None else per_frame + self.proj_x.bias

    def _scores(self, ops, x: SparseMap, y: Tensor) -> Tensor:
        """(N,) v · tanh(W_x x + b_x + W_y y) of every active site (`ops`: the compiled engine or
        None)."""
        if self._scores_need_grad():
            # One GEMM with the per-frame term (b_x folded in) as its input.
            per_frame = self._frame_term(y).index_select(0, x.sample_index)
            hidden = torch.tanh(torch.addmm(per_frame, x.features, self.proj_x.weight.t()))
            return self.score(hidden).squeeze(1)
        with torch.no_grad():  # oneDNN's GEMM, then the per-frame term and tanh in place
            if ops is not None:  # the same steps as one compiled op
                dtype = compute_dtype(x.features, self.proj_x.weight)
                return ops.additive_scores(
                    x.features.to(dtype),
                    self.proj_x.weight.to(dtype),
                    self._frame_term(y),
                    x.coords,
                    self.score.weight.to(dtype),
                )
            per_frame = self._frame_term(y)[x.sample_index]
            hidden = linear(x.features, self.proj_x.weight).add_(per_frame).tanh_()
            return self.score(hidden).squeeze(1)

    def _select_compiled(self, ops, x: SparseMap, scores: Tensor) -> SparseMap:
        """Softmax + top-p per frame (one compiled op), capture, selection and gating."""
        probs, keep, index = ops.nucleus(scores, x.coords, x.num_samples, float(self.p))
        probs = self.capture(probs, keep, x)
        kept = x.select_rows(index)
        if self.gating == "gated":
            sample = x.sample_index
            peak = probs.new_zeros(x.num_samples).scatter_reduce(
                0, sample, probs, "amax", include_self=False
            )
            kept = sparse_scale(kept, (probs / peak[sample]).index_select(0, index))
        return kept

    def forward(self, x: SparseMap, y: Tensor) -> SparseMap:
        """Scores, selects and (optionally) gates the active sites.

        Args:
            x: N active sites with (N, C) features over F frames.
            y: (F, D) text feature of the utterance each frame belongs to.

        Returns:
            The kept sites (a subset of x, at least one per frame that had any).
        """
        if self.p >= 1.0 and self.gating == "none" and not self._recorded():
            return x  # nothing is pruned and nobody reads the scores: do not compute them
        ops = compiled_ops(x.features.device)
        scores = self._scores(ops, x, y)
        if ops is not None:
            return self._select_compiled(ops, x, scores)
        sample = x.sample_index
        position, width = _segment_layout(sample, x.num_samples)
        # Under autocast the scores come out of the GEMMs in bf16/fp16; the softmax (and so the
        # probabilities top-p sums) runs in float32 or wider, as autocast does for softmax.
        grid = scores.new_full(
            (x.num_samples, width),
            float("-inf"),
            dtype=torch.promote_types(scores.dtype, torch.float32),
        )
        grid[sample, position] = scores.to(grid.dtype)
        valid = torch.zeros_like(grid, dtype=torch.bool)
        valid[sample, position] = True
        # Frames without sites are all -inf: softmax gives NaN there, which nothing reads.
        probs_grid = torch.softmax(grid, dim=1)
        keep = top_p_mask(probs_grid.detach(), self.p, valid)[sample, position]
        probs = self.capture(probs_grid[sample, position], keep, x)
        kept = x.select(keep)
        if self.gating == "gated":
            peak = probs_grid.nan_to_num(0.0).amax(dim=1)
            kept = sparse_scale(kept, (probs / peak[sample])[keep])
        return kept
