"""Routing shared by every backend: the dispatch plan (which expert computes which frame, in what order), and the
auxiliary losses and counts that come back with the output."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MoEAux:
    """What the router did, per router (scalars and ``[E]`` for one router, ``[R]`` and ``[R, E]`` for R).

    load_balancing_loss: Switch Transformer's ``E · Σ_e f_e · P_e``, where ``f_e`` is the fraction of the (frame,
        choice) assignments that went to expert e and ``P_e`` the mean router probability of e over the frames that are
        not padding. 1 when the load is uniform.
    router_z_loss: ST-MoE's mean over frames of ``logsumexp(router_logits)²``; keeps logits small.
    expert_counts: int64, frames routed to each expert (padding never counts).
    """

    load_balancing_loss: torch.Tensor
    router_z_loss: torch.Tensor
    expert_counts: torch.Tensor


@dataclass(frozen=True)
class Dispatch:
    """The routed (frame, expert) pairs, each computed once, sorted by expert and then by frame.

    pair_frame, pair_expert: ``[P]`` int64. expert_offsets: ``[E + 1]`` int64: expert e owns pairs
    ``expert_offsets[e]:expert_offsets[e + 1]``.
    slot_pair: ``[R, N, k]`` int64, the pair that router r's j-th choice for frame n reads, -1 for padding frames.
        Several routers choosing the same (frame, expert) share one pair.
    """

    pair_frame: torch.Tensor
    pair_expert: torch.Tensor
    expert_offsets: torch.Tensor
    slot_pair: torch.Tensor

    @property
    def num_pairs(self) -> int:
        return self.pair_frame.numel()


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """Routing arithmetic runs in float32, or float64 for float64 inputs (gradcheck)."""
    return t if t.dtype == torch.float64 else t.float()


def top_k_experts(router_logits: torch.Tensor, k: int) -> torch.Tensor:
    """``[..., E]`` logits → ``[..., k]`` int64 expert ids, best first; exact ties go to the lower expert index (a
    stable sort), so every backend picks the same experts."""
    if torch.compiler.is_exporting():
        # A stable sort does not export to ONNX, whose TopK gives the lower index first on ties, as the sort does
        # (torch.topk, which runs an ExportedProgram in PyTorch, documents no tie order).
        return torch.topk(at_least_float32(router_logits), k, dim=-1).indices
    return torch.sort(at_least_float32(router_logits), dim=-1, descending=True, stable=True).indices[..., :k]


def gate_values(probs: torch.Tensor, experts: torch.Tensor, normalize: bool) -> torch.Tensor:
    gates = probs.gather(-1, experts)
    return gates / gates.sum(-1, keepdim=True) if normalize else gates


def build_dispatch(experts: torch.Tensor, valid: torch.Tensor, num_experts: int) -> Dispatch:
    """Sort the routed pairs by expert (a sort of expert·N + frame, which also merges the pairs that several routers
    chose) and count them per expert (bincount + cumsum)."""
    routers, frames, k = experts.shape
    frame_ids = torch.arange(frames, device=experts.device).view(1, frames, 1).expand_as(experts)
    keys = (experts * frames + frame_ids)[:, valid]
    unique_keys, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    pair_expert = unique_keys // frames
    counts = torch.bincount(pair_expert, minlength=num_experts)
    expert_offsets = torch.zeros(num_experts + 1, dtype=torch.int64, device=experts.device)
    torch.cumsum(counts, 0, out=expert_offsets[1:])
    slot_pair = torch.full((routers, frames, k), -1, dtype=torch.int64, device=experts.device)
    slot_pair[:, valid] = inverse
    return Dispatch(unique_keys % frames, pair_expert, expert_offsets, slot_pair)


def router_aux(router_logits: torch.Tensor, probs: torch.Tensor, experts: torch.Tensor,
               valid: torch.Tensor) -> MoEAux:
    """Aux losses and counts for ``[R, N, E]`` logits/probs and ``[R, N, k]`` choices (R kept)."""
    num_experts, k = probs.shape[-1], experts.shape[-1]
    valid_f = valid.to(probs.dtype)
    frames = valid_f.sum().clamp(min=1.0)
    onehot_counts = torch.zeros(probs.shape, dtype=torch.int64, device=probs.device)
    onehot_counts.scatter_(-1, experts, 1)
    counts = (onehot_counts * valid.view(1, -1, 1)).sum(1)
    fraction = counts.to(probs.dtype) / (frames * k)
    mean_prob = (probs * valid_f.view(1, -1, 1)).sum(1) / frames
    load_balancing = num_experts * (fraction * mean_prob).sum(-1)
    z = torch.logsumexp(at_least_float32(router_logits), dim=-1) ** 2
    z_loss = (z * valid_f.view(1, -1)).sum(-1) / frames
    return MoEAux(load_balancing, z_loss, counts)
