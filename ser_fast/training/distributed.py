"""Data-parallel training under ``torchrun``: W processes train the weights one process would, with
the same global batch, each running the network on its share of the batch's rows (:func:`row_share`).
One process (no torchrun, or ``WORLD_SIZE=1``) uses nothing here: the plain trainer, bit for bit.

- BatchNorm in training takes the whole batch's moments, all-reduced with autograd
  (:class:`GlobalBatchNorm2d`, ...; ``torch.nn.SyncBatchNorm`` refuses CPU tensors, so gloo cannot use it).
- Dropout draws the whole batch's mask from the generator state one process would use and keeps its
  own rows (:class:`BatchDropout`): a row's mask does not depend on its process.
- The loss is taken on the whole batch, the per-row outputs gathered by :func:`gather_rows`, so every
  process computes the same L (losses that mix rows included). The gather's backward sums the W
  processes' gradients, giving each process's rows W·∂L/∂rows; DDP's average divides by W and leaves
  the one-process ∂L/∂θ, however unevenly the rows are split.

These collectives run on the default group, like ``SyncBatchNorm``'s: every process builds the same
graph, so they are issued in the same order everywhere, between DDP's own."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

logger = logging.getLogger(__name__)

TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
DEVICE_TYPES = ("cpu", "cuda")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes, and its device; at size 1 the collectives do nothing."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        """Whether several processes train together (DDP)."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files, logs progress and validates."""
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str | torch.device = "cpu", environ: Mapping[str, str] | None = None) -> World:
        """The world torchrun describes in ``environ`` (default ``os.environ``); size 1 without torchrun.
        Under torchrun a CUDA device without an index is ``cuda:LOCAL_RANK`` (one GPU per process)."""
        launch = _torchrun_launch(os.environ if environ is None else environ)
        if launch is None:
            return cls(device=_check_device(device))
        rank, size, local_rank = launch
        return cls(rank=rank, size=size, local_rank=local_rank, device=_local_device(device, local_rank))


def _torchrun_launch(environ: Mapping[str, str]) -> tuple[int, int, int] | None:
    """(rank, world size, local rank) from torchrun's variables, or None when none is set."""
    present = [name for name in TORCHRUN_VARIABLES if name in environ]
    if not present:
        return None
    missing = [name for name in TORCHRUN_VARIABLES if name not in environ]
    if missing:
        raise ValueError(f"torchrun sets {TORCHRUN_VARIABLES} together; {present} are set but {missing} are not")
    try:
        size, rank, local_rank = (int(environ[name]) for name in TORCHRUN_VARIABLES)
    except ValueError:
        values = {name: environ[name] for name in TORCHRUN_VARIABLES}
        raise ValueError(f"torchrun's variables must be integers, got {values}") from None
    if size < 1 or not 0 <= rank < size or local_rank < 0:
        raise ValueError(f"expected WORLD_SIZE >= 1, 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0, got "
                         f"WORLD_SIZE={size}, RANK={rank}, LOCAL_RANK={local_rank}")
    return rank, size, local_rank


def _local_device(device: str | torch.device, local_rank: int) -> torch.device:
    """``device``, a CUDA one without an index being ``cuda:local_rank`` (one GPU per process)."""
    device = _check_device(device)
    return torch.device("cuda", local_rank) if device.type == "cuda" and device.index is None else device


def _check_device(device: str | torch.device) -> torch.device:
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device {device!r}: expected one of {DEVICE_TYPES}, e.g. 'cpu' or 'cuda:0'") from None
    if device.type not in DEVICE_TYPES:
        raise ValueError(f"device {device}: expected one of {DEVICE_TYPES}")
    return device


def backend_for(device: str | torch.device) -> str:
    """The collective backend for training on ``device``: NCCL on CUDA, gloo on CPU."""
    return "nccl" if _check_device(device).type == "cuda" else "gloo"


def join_world(device: str | torch.device = "cpu") -> World:
    """The world this process trains in, on ``device``. Under torchrun with ``WORLD_SIZE > 1`` the first call
    initialises the default process group (gloo on CPU, NCCL on CUDA), which later calls share and process exit destroys
    (a group created again on torchrun's rendezvous store can read the previous group's addresses and hang). A group the
    caller initialised is used and left to the caller. Otherwise nothing is initialised and the world has size 1."""
    if dist.is_available() and dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        return World(dist.get_rank(), dist.get_world_size(), local_rank, _local_device(device, local_rank))
    world = World.from_env(device)
    if not world.enabled:
        return world
    if not dist.is_available():
        raise RuntimeError("torch was built without torch.distributed; it cannot train under torchrun")
    if world.device.type == "cuda":
        torch.cuda.set_device(world.device)
    backend = backend_for(world.device)
    dist.init_process_group(backend, rank=world.rank, world_size=world.size)
    atexit.register(_destroy_at_exit)
    logger.info("process %d of %d joined the %s group (device %s)", world.rank, world.size, backend, world.device)
    return world


def _destroy_at_exit() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    """Whether this process is rank 0 (or the only process): the one that writes and prints."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return World.from_env().is_main


def barrier(world: World) -> None:
    """Wait until every process gets here (nothing with one process)."""
    if world.enabled:
        dist.barrier()


def broadcast_from_main(values: Sequence[float], world: World) -> list[float]:
    """Rank 0's ``values`` on every process (float64), so decisions made from them (best epoch, LR schedule) agree."""
    if not world.enabled:
        return list(values)
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=world.device)
    dist.broadcast(tensor, src=0)
    return tensor.tolist()


@dataclass(frozen=True)
class RowShare:
    """Rows ``start:stop`` of a batch of ``total`` rows: one process's share."""

    start: int
    stop: int
    total: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def row_share(total: int, world: World) -> RowShare:
    """This process's contiguous share of a batch of ``total`` rows: shares differ by at most one row,
    the first ``total % W`` processes taking the extra ones. Every process needs a row."""
    if isinstance(total, bool) or not isinstance(total, int):
        raise TypeError(f"total must be an int (rows in the batch), got {type(total).__name__}")
    if total < world.size:
        raise ValueError(f"a batch of {total} rows cannot be split across {world.size} processes: every process "
                         f"needs at least one row")
    base, extra = divmod(total, world.size)
    start = world.rank * base + min(world.rank, extra)
    return RowShare(start, start + base + (1 if world.rank < extra else 0), total)


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the backward sums the processes' gradients, the gradient of the sum of every
    process's loss. (torch.distributed.nn.functional.all_reduce does the same but is deprecated.)"""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total

    backward = forward  # the same sum, of the gradients


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``Σ_processes tensor`` on every process, differentiable (the default process group must exist)."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    return _AllReduceSum.apply(tensor)


def gather_rows(local: torch.Tensor, share: RowShare) -> torch.Tensor:
    """The whole batch ``[share.total, ...]`` from each process's rows ``local [share.rows, ...]``, differentiable: rows
    ``share.start:share.stop`` get the summed gradient of every process's use. An all-reduce of zero-padded rows, as
    shares may differ in size (gloo's all-gather needs equal ones); adding zeros is exact."""
    if not isinstance(local, torch.Tensor) or local.ndim < 1:
        raise TypeError(f"local must be a tensor [rows, ...], got {local!r:.80}")
    if local.shape[0] != share.rows:
        raise ValueError(f"local has {local.shape[0]} rows, but the share {share.start}:{share.stop} has {share.rows}")
    before = local.new_zeros((share.start, *local.shape[1:]))
    after = local.new_zeros((share.total - share.stop, *local.shape[1:]))
    return all_reduce_sum(torch.cat([before, local, after]))


class _GlobalMoments:
    """BatchNorm whose batch statistics in training are the whole batch's, summed over processes."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        uses_batch_statistics = self.training or self.running_mean is None
        if not (uses_batch_statistics and dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        self._check_input_dim(input)
        return _global_batch_norm(self, input)


def _global_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """``nn.BatchNorm``'s training forward with the moments of every process's rows (mean, then the
    centred sum of squares), in float32 at least; autograd through the all-reduces gives the backward."""
    dims = [0, *range(2, x.ndim)]
    view = (1, -1, *([1] * (x.ndim - 2)))
    values = x.to(torch.promote_types(x.dtype, torch.float32))
    local_count = values.new_tensor([x.numel() // x.shape[1]])
    sums = all_reduce_sum(torch.cat([values.sum(dims), local_count]))
    # No check for a count of 1 (it would cost a device sync per layer): row_share gives every
    # process a row, so a batch in data-parallel training has at least W >= 2 rows.
    count = sums[-1].detach()
    mean = sums[:-1] / count
    centred = values - mean.view(view)
    variance = all_reduce_sum(centred.square().sum(dims)) / count
    out = centred * torch.rsqrt(variance + bn.eps).view(view)
    if bn.affine:
        out = out * bn.weight.view(view) + bn.bias.view(view)
    if bn.training and bn.track_running_stats:
        _update_running_stats(bn, mean.detach(), variance.detach() * count / (count - 1))
    return out.to(x.dtype)


@torch.no_grad()
def _update_running_stats(bn: nn.modules.batchnorm._BatchNorm, mean: torch.Tensor, unbiased: torch.Tensor) -> None:
    """What ``nn.BatchNorm`` does to its buffers in a training step (momentum None: cumulative average)."""
    bn.num_batches_tracked.add_(1)
    factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    bn.running_mean.copy_(factor * mean + (1 - factor) * bn.running_mean)
    bn.running_var.copy_(factor * unbiased + (1 - factor) * bn.running_var)


class GlobalBatchNorm1d(_GlobalMoments, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` with the whole batch's statistics in data-parallel training."""


class GlobalBatchNorm2d(_GlobalMoments, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with the whole batch's statistics in data-parallel training."""


class GlobalBatchNorm3d(_GlobalMoments, nn.BatchNorm3d):
    """``nn.BatchNorm3d`` with the whole batch's statistics in data-parallel training."""


_GLOBAL_BATCH_NORM = {nn.BatchNorm1d: GlobalBatchNorm1d, nn.BatchNorm2d: GlobalBatchNorm2d,
                      nn.BatchNorm3d: GlobalBatchNorm3d}


class BatchDropout(nn.Dropout):
    """``nn.Dropout`` for a process holding rows ``share.start:share.stop`` (set by :func:`batch_rows`): it draws the
    whole ``[share.total, ...]`` batch's mask from the generator state every process shares and keeps its rows."""

    share: RowShare | None = None

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return input
        share = self.share
        if share is None:
            raise RuntimeError("BatchDropout in training needs the process's rows of the batch: run the forward "
                               "pass inside batch_rows(model, share)")
        if input.shape[0] != share.rows:
            raise ValueError(f"BatchDropout got {input.shape[0]} rows, but the share {share.start}:{share.stop} "
                             f"has {share.rows}")
        whole = torch.ones((share.total, *input.shape[1:]), dtype=input.dtype, device=input.device)
        # F.dropout(ones) is exactly the scaled mask: 1 * (bernoulli / (1 - p)).
        return input * F.dropout(whole, self.p, training=True)[share.start:share.stop]


def convert_for_data_parallel(model: nn.Module) -> nn.Module:
    """``model`` with its BatchNorms made :class:`GlobalBatchNorm*d` and its ``nn.Dropout`` :class:`BatchDropout`, in
    place (same parameters, buffers and state-dict keys). Other dropout kinds draw per-process masks: refused."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    for name, child in list(model.named_children()):
        setattr(model, name, _converted(child))
    return model


def _converted(module: nn.Module) -> nn.Module:
    if type(module) in _GLOBAL_BATCH_NORM:
        return _global_copy(module, _GLOBAL_BATCH_NORM[type(module)])
    if type(module) is nn.Dropout:
        return BatchDropout(module.p).train(module.training)
    if isinstance(module, nn.modules.dropout._DropoutNd) and not isinstance(module, BatchDropout):
        raise TypeError(f"{type(module).__name__} draws a mask per process; only nn.Dropout is kept "
                        "process-independent in data-parallel training")
    return convert_for_data_parallel(module)


def _global_copy(bn: nn.modules.batchnorm._BatchNorm, cls: type) -> nn.Module:
    """A ``cls`` sharing ``bn``'s parameter and buffer tensors (so an optimizer built on ``bn`` still updates it)."""
    copy = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    for name, tensor in [*bn.named_parameters(recurse=False), *bn.named_buffers(recurse=False)]:
        setattr(copy, name, tensor)
    return copy.train(bn.training)


@contextlib.contextmanager
def batch_rows(model: nn.Module, share: RowShare) -> Iterator[None]:
    """Tell ``model``'s :class:`BatchDropout` modules which rows of the batch this process holds."""
    dropouts = [m for m in model.modules() if isinstance(m, BatchDropout)]
    for dropout in dropouts:
        dropout.share = share
    try:
        yield
    finally:
        for dropout in dropouts:
            dropout.share = None


def data_parallel(model: nn.Module, world: World) -> DistributedDataParallel:
    """``model`` converted (:func:`convert_for_data_parallel`) and wrapped in DDP, whose forward
    ``(share, labels, *inputs)`` is the model's objective on the whole batch from this process's rows
    ``inputs`` (its ``training_forward`` arguments). Building it is collective."""
    convert_for_data_parallel(model)
    device_ids = [world.device] if world.device.type == "cuda" else None
    # Buffers are not broadcast: the BatchNorm running statistics come from all-reduced moments.
    return DistributedDataParallel(_BatchObjective(model), device_ids=device_ids, forward_sync_buffers=False,
                                   find_unused_parameters=not getattr(model, "every_parameter_trained", False))


class _BatchObjective(nn.Module):
    """The whole batch's loss from one process's rows, as a module for DDP (whose forward must run for its gradient
    hooks to fire): the network runs on this process's rows, the objective on the per-row outputs gathered from every
    process (see the module docstring). EDRL's encoders, run on the gathered ``h.detach()``, get the full ∂L/∂θ on
    every process; DDP's average keeps it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, share: RowShare, labels: torch.Tensor, *inputs: torch.Tensor):
        with batch_rows(self.model, share):
            return self.model.objective(_gathered(self.model.training_forward(*inputs), share), labels)


def _gathered(out, share: RowShare):
    """Every per-row tensor of ``training_forward``'s output (a tensor, or a tuple of them and None) gathered."""
    if isinstance(out, torch.Tensor):
        return gather_rows(out, share)
    values = [None if t is None else gather_rows(t, share) for t in out]
    return type(out)(*values) if hasattr(out, "_fields") else type(out)(values)
