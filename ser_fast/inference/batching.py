"""Length-bucketed batches: items of similar length together, so each batch is padded only to its own longest item and
little compute goes to padding."""

from __future__ import annotations

import numbers
from collections.abc import Sequence


def length_buckets(lengths: Sequence[int], batch_size: int, *, max_batch_frames: int | None = None) -> list[list[int]]:
    """Indices into ``lengths`` grouped into batches: sorted by length (longest first, ties in input order), cut into
    runs of at most ``batch_size`` items and, with ``max_batch_frames``, at most that many padded frames (items × the
    batch's longest item; a single item longer than the cap is a batch of its own). Each index is in exactly one batch.
    Longest first: the first batch is the largest, so a memory problem shows at once, not at the end."""
    check_batch_size(batch_size)
    check_max_batch_frames(max_batch_frames)
    if isinstance(lengths, (str, bytes)) or not isinstance(lengths, Sequence):
        raise TypeError(f"lengths must be a sequence of ints, got {type(lengths).__name__}")
    bad = [i for i, n in enumerate(lengths) if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0]
    if bad:
        raise ValueError(f"lengths must be non-negative ints; lengths[{bad[0]}] is {lengths[bad[0]]!r}")
    order = sorted(range(len(lengths)), key=lambda i: -int(lengths[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # Sorted longest first, so the batch's longest item is its first.
        longest = int(lengths[current[0]]) if current else int(lengths[i])
        too_many = len(current) >= batch_size
        too_wide = max_batch_frames is not None and (len(current) + 1) * longest > max_batch_frames
        if current and (too_many or too_wide):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def check_batch_size(batch_size: object) -> None:
    if not _positive_int(batch_size):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def check_max_batch_frames(max_batch_frames: object) -> None:
    if max_batch_frames is not None and not _positive_int(max_batch_frames):
        raise ValueError(f"max_batch_frames must be None or a positive int, got {max_batch_frames!r}")


def _positive_int(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and value >= 1
