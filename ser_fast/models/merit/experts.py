"""The shared pool of experts with one router per task (Sparse MERIT's mixture of experts), in the four designs the
paper compares: ser_fast's sparse top-k, the released top-1, dense softmax, and naive multi-task learning (no
experts)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ser_fast.models.checks import check_positive_ints
from ser_fast.ops import moe
from ser_fast.ops.moe.routing import MoEAux, at_least_float32, router_aux, top_k_experts

TASKS = ("ser", "se")
DESIGNS = ("sparse", "released", "dense", "mtl")


@dataclass(frozen=True)
class ExpertOutput:
    """``features [R, N, D_out]`` per task (R = len(TASKS), in that order), the routers' aux losses and per-expert frame
    counts, and the router logits ``[R, N, E]``."""

    features: torch.Tensor
    aux: MoEAux
    router_logits: torch.Tensor


class ExpertPool(nn.Module):
    """E experts ``Linear(D→H) + ReLU + Linear(H→D_out)`` shared by the tasks, and a router ``Linear(D→E)`` per task.

    Designs:
        ``"sparse"`` (ser_fast's default): each frame runs only its top-k experts per router through
            :func:`ser_fast.ops.moe` (a pair chosen by both routers runs once); outputs are scaled by the router's
            softmax probability, so the routers learn; the load-balancing loss is returned for the objective.
        ``"released"``: the authors' release: every expert runs on every frame and the router's top-k one-hot mask
            selects (not scaled by the gate, so no gradient reaches the router).
        ``"dense"``: every expert on every frame, weighted by the full softmax.
        ``"mtl"``: naive multi-task learning: one shared feed-forward block, no routing (E = 1).
    """

    def __init__(self, input_dim: int, *, num_experts: int = 3, hidden_dim: int = 4096, output_dim: int = 1024,
                 top_k: int = 1, design: str = "sparse"):
        super().__init__()
        if design not in DESIGNS:
            raise ValueError(f"ExpertPool: design {design!r}: expected one of {DESIGNS}")
        check_positive_ints("ExpertPool", input_dim=input_dim, num_experts=num_experts, hidden_dim=hidden_dim,
                            output_dim=output_dim, top_k=top_k)
        if design == "mtl":
            num_experts, top_k = 1, 1
        if top_k > num_experts:
            raise ValueError(f"ExpertPool: top_k={top_k} exceeds num_experts={num_experts}")
        self.design, self.num_experts, self.top_k = design, num_experts, top_k
        self.w1 = nn.Parameter(torch.empty(num_experts, input_dim, hidden_dim))
        self.b1 = nn.Parameter(torch.empty(num_experts, hidden_dim))
        self.w2 = nn.Parameter(torch.empty(num_experts, hidden_dim, output_dim))
        self.b2 = nn.Parameter(torch.empty(num_experts, output_dim))
        self.routers = nn.ModuleDict({task: nn.Linear(input_dim, num_experts) for task in TASKS})
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Each expert initialised as ``nn.Linear`` would be (uniform ±1/√fan_in)."""
        for weight, bias in ((self.w1, self.b1), (self.w2, self.b2)):
            bound = 1.0 / math.sqrt(weight.shape[1])
            nn.init.uniform_(weight, -bound, bound)
            nn.init.uniform_(bias, -bound, bound)

    @property
    def uses_balancing_loss(self) -> bool:
        """Only a router that receives gradients can be balanced."""
        return self.design in ("sparse", "dense") and self.num_experts > 1

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> ExpertOutput:
        """``x [N, D]`` frames (batch and time flattened), ``padding [N]`` bool (True = padding)."""
        if x.dim() != 2 or x.shape[1] != self.w1.shape[1]:
            raise ValueError(f"ExpertPool: x must be [N, D={self.w1.shape[1]}], got {tuple(x.shape)}")
        logits = torch.stack([self.routers[task](x) for task in TASKS])
        if self.design == "sparse":
            y, aux = moe(x, logits, self.w1, self.b1, self.w2, self.b2, k=self.top_k, mask=padding)
            return ExpertOutput(y, aux, logits)
        valid = torch.ones(x.shape[0], dtype=torch.bool, device=x.device) if padding is None else ~padding
        probs = torch.softmax(at_least_float32(logits), dim=-1)
        chosen = top_k_experts(logits, self.top_k)
        aux = router_aux(logits, probs, chosen, valid)
        every = self._every_expert(x)
        if self.design == "dense":
            weights = probs.to(x.dtype)
        else:
            weights = torch.zeros_like(logits).scatter_(-1, chosen, 1.0).detach()
        y = torch.einsum("rne,end->rnd", weights, every) * valid.view(1, -1, 1).to(x.dtype)
        return ExpertOutput(y, aux, logits)

    def _every_expert(self, x: torch.Tensor) -> torch.Tensor:
        """``[E, N, D_out]``: every expert on every frame (the dense and released designs' cost)."""
        hidden = F.relu(torch.baddbmm(self.b1.unsqueeze(1), x.unsqueeze(0).expand(self.num_experts, -1, -1), self.w1))
        return torch.baddbmm(self.b2.unsqueeze(1), hidden, self.w2)
