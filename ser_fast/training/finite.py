"""Stopping a diverged run before it writes anything: every trainer checks each step's loss terms and,
before it saves the epoch, the weights. A non-finite value stops the run with an error that names the
epoch and the loss term; the epoch's checkpoint and model are never written, so the run folder keeps
the last finite ones (and ``--resume`` starts from them)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch


class NonFiniteTrainingError(ValueError):
    """A loss term or a weight became NaN or infinite; usually the learning rate is too high."""


def check_losses(scalars: Mapping[str, float], epoch: int, step: int) -> None:
    """Raise :class:`NonFiniteTrainingError` naming the first non-finite loss term of a step (the
    weighted sum ``total`` only when no term of its own is to blame)."""
    for term, value in sorted(scalars.items(), key=lambda item: item[0] == "total"):
        if not math.isfinite(value):
            raise NonFiniteTrainingError(
                f"training diverged: loss term {term} is {value} at epoch {epoch}, step {step}; nothing of epoch "
                f"{epoch} was saved, and the run folder keeps the last finite checkpoint. Lower the learning rate "
                "and train again (or resume).")


def check_weights(model: torch.nn.Module, epoch: int) -> None:
    """Raise :class:`NonFiniteTrainingError` naming the first parameter or buffer that is not finite."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise NonFiniteTrainingError(
                f"training diverged: weight {name} holds NaN or infinite values after epoch {epoch} (every loss term "
                f"was finite); epoch {epoch} was not saved, and the run folder keeps the last finite checkpoint. "
                "Lower the learning rate and train again (or resume).")
