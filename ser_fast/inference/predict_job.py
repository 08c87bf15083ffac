"""The batch job behind ``ser-fast predict``: a pile of audio in, one prediction row per input out, resumable, and
shardable across processes with ``torchrun``.

A ``DataLoader`` decodes in ``workers`` processes while the model runs on the previous chunk of ``CHUNK_BATCHES ×
batch_size`` inputs; a file that cannot be decoded becomes an error row, never an exception. Each chunk's rows are
appended in input order, flushed and fsync'd, so memory stays flat, a kill loses at most the chunk in flight, and a
resumed run ends with the same file. Test hook: ``SER_FAST_PREDICT_DELAY_S`` (seconds) sleeps after each chunk.

Sharding: with ``shard=(rank, world_size)``, or under ``torchrun``, rank r takes the inputs whose index ≡ r (mod
world_size) and writes ``<stem>.rank<r>-of-<w><suffix>`` beside the output. With a process group the ranks then meet and
rank 0 merges the parts in input order; otherwise call ``merge_shards`` once every rank has finished. Across nodes, the
output's folder must be on a shared file system."""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import logging
import multiprocessing
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ser_fast.inference.decoding import DecodedInput, decode_input
from ser_fast.inference.inputs import InputItem
from ser_fast.inference.recognizer import Prediction
from ser_fast.inference.segmented import VAD, segment_specs
from ser_fast.inference.segments import Segment, segments_for
from ser_fast.inference.writers import (
    RowWriter,
    file_of,
    output_columns,
    output_format,
    prediction_rows,
    read_records,
    row_key,
    row_text,
)

logger = logging.getLogger(__name__)

CHUNK_BATCHES = 4
# Inputs per DataLoader fetch: enough to amortise the worker round trip, few enough to keep prefetch small.
LOADER_BATCH = 8
DELAY_ENV = "SER_FAST_PREDICT_DELAY_S"
# The ranks meet only when all have finished their shards, which may be hours apart on uneven inputs.
BARRIER_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class PredictSummary:
    """What a job did: rows written with a label (``done``) or with an error (``errors``), inputs already in the output
    (``skipped``), wall time. Totals over all ranks when the ranks met."""

    out: Path
    done: int
    errors: int
    skipped: int
    seconds: float
    rank: int = 0
    world_size: int = 1

    @property
    def total(self) -> int:
        return self.done + self.errors + self.skipped

    def line(self) -> str:
        return (f"{self.total} inputs: {self.done} done, {self.errors} errors, {self.skipped} skipped "
                f"(already in {self.out}) in {self.seconds:.1f} s")


def run_predict(recognizer, sources: Sequence[InputItem | str | os.PathLike], out_path: str | os.PathLike, *,
                workers: int = 0, batch_size: int = 32, window_s: float | None = None, hop_s: float | None = None,
                return_embedding: bool = False, progress: bool = True, shard: tuple[int, int] | None = None,
                classes: Sequence[str] | str | None = None, min_confidence: float | None = None,
                segments: str | Mapping[str, Sequence[Segment]] | None = None) -> PredictSummary:
    """Predict every input with an ``EmotionRecognizer`` and append one row per input to ``out_path``, skipping inputs
    already there. Every input gets exactly one row; one that cannot be used gets an ``error`` and the job goes on.

    Args:
        sources: ``InputItem``s (from ``list_inputs``) or paths; an input named twice is done once.
        out_path: ``.jsonl`` or ``.csv`` (see ``writers``); created, or resumed when it exists.
        workers: decoding processes (0: decode in this process, no overlap with compute).
        batch_size, window_s, hop_s, return_embedding, classes, min_confidence: as ``EmotionRecognizer.predict``
            (the rows have a ``prob_`` column for each class decided among).
        segments: ``"vad"`` (silero-vad finds each file's speech) or a table from
            :func:`~ser_fast.inference.segments.read_segments`: a row per segment, then the file's row. A file the
            table does not name gets an error row.
        progress: a tqdm bar over the pending inputs, errors counted in its postfix.
        shard: ``(rank, world_size)``: do this rank's share only (see the module docstring); default: from
            ``torchrun``'s environment, else unsharded.

    Bad arguments (and an ``out_path`` written for other columns) raise before any input is read."""
    started = time.perf_counter()
    out_path = Path(out_path)
    output_format(out_path)
    _check_job_args(recognizer, workers)
    if segments is not None and segments != VAD and not isinstance(segments, Mapping):
        raise TypeError(f"segments must be None, 'vad' or a table of segments by file (read_segments), got "
                        f"{type(segments).__name__}")
    if isinstance(segments, Mapping):  # every entry checked before the output is opened
        segment_specs(list(segments.values()), len(segments))
    else:
        segment_specs(segments, 0)  # 'vad' without silero-vad: the ImportError now
    options = dict(batch_size=batch_size, window_s=window_s, hop_s=hop_s, return_embedding=return_embedding,
                   classes=classes, min_confidence=min_confidence, segments=segments)
    # No inputs: the recognizer checks batch_size, window_s and hop_s now, before any input could be blamed
    # for a bad argument (the per-input fallback below turns ValueErrors into error rows).
    recognizer.predict_waveforms([], [], **{**options, "segments": None})
    items = _unique_items(sources)
    decision = recognizer.decision(classes, min_confidence)
    columns = output_columns(decision.classes, embedding=return_embedding, segments=segments is not None,
                             dimensions=decision.dimensions)
    rank, world_size, meet, created_group = _resolve_shard(shard)
    try:
        mine = items[rank::world_size]
        write_path = shard_path(out_path, rank, world_size) if world_size > 1 else out_path
        done_elsewhere = _done_in_other_files(out_path, write_path, columns) if world_size > 1 else set()
        with RowWriter(write_path, columns) as writer:
            done_already = writer.done | done_elsewhere
            pending = [item for item in mine if row_text(item.source) not in done_already]
            label = f"predict rank {rank}/{world_size}" if world_size > 1 else "predict"
            done, errors = _predict_pending(recognizer, pending, writer, options, workers=workers,
                                            progress=progress, desc=label, position=rank)
        counts = [done, errors, len(mine) - len(pending)]
        if meet:
            counts = _meet_and_merge(counts, out_path, items, columns, rank)
    finally:
        if created_group:
            dist.destroy_process_group()
    return PredictSummary(out_path, *counts, seconds=time.perf_counter() - started, rank=rank,
                          world_size=world_size)


def shard_path(out_path: str | os.PathLike, rank: int, world_size: int) -> Path:
    """Where rank ``rank`` of ``world_size`` writes its part: ``preds.jsonl`` → ``preds.rank0-of-2.jsonl``."""
    out_path = Path(out_path)
    if not (isinstance(rank, int) and isinstance(world_size, int) and 0 <= rank < world_size):
        raise ValueError(f"expected 0 <= rank < world_size (ints), got rank={rank!r}, world_size={world_size!r}")
    return out_path.with_name(f"{out_path.stem}.rank{rank}-of-{world_size}{out_path.suffix}")


def shard_parts(out_path: str | os.PathLike) -> list[Path]:
    """The part files of ``out_path`` on disk, from any world size, sorted by world size then rank."""
    out_path = Path(out_path)
    pattern = re.compile(rf"{re.escape(out_path.stem)}\.rank(\d+)-of-(\d+){re.escape(out_path.suffix)}")
    found = []
    if out_path.parent.is_dir():
        for path in out_path.parent.iterdir():
            match = pattern.fullmatch(path.name)
            if match and path.is_file():
                found.append((int(match[2]), int(match[1]), path))
    return [path for _, _, path in sorted(found)]


def merge_shards(out_path: str | os.PathLike, sources: Sequence[InputItem | str | os.PathLike],
                 classes: Sequence[str], *, return_embedding: bool = False, segments: bool = False,
                 dimensions: Sequence[str] = ()) -> int:
    """Append every part file's rows to ``out_path``, in ``sources`` order, keeping its own rows and adding none twice;
    remove the parts once ``out_path`` holds a row for every input. Idempotent; returns the number of rows added.
    ``classes``, ``dimensions``: the decision's, as the job wrote them (``output_columns``)."""
    out_path = Path(out_path)
    output_format(out_path)
    return _merge(out_path, _unique_items(sources), output_columns(classes, embedding=return_embedding,
                                                                   segments=segments, dimensions=dimensions))


def _decode_items(decode: Callable[[str], tuple[np.ndarray, float, str | None]],
                  items: list[InputItem]) -> list[DecodedInput]:
    """The loader's collate step, run in its workers: the pending inputs decoded, or as error items."""
    return [_decode_item(decode, item) for item in items]


def _decode_item(decode, item: InputItem) -> DecodedInput:
    if item.error is not None:
        return DecodedInput(item.source, None, None, item.error)
    try:
        return decode_input(item.source, item.source, None, decode)
    # Whatever goes wrong decoding a file is that file's row, never the end of the worker or the job.
    except Exception as error:
        return DecodedInput(item.source, None, None, _error_text(error))


def _predict_pending(recognizer, pending: list[InputItem], writer: RowWriter, options: dict, *,
                     workers: int, progress: bool, desc: str, position: int) -> tuple[int, int]:
    delay = _test_delay()
    done = errors = 0
    chunk_size = CHUNK_BATCHES * options["batch_size"]
    with tqdm(total=len(pending), disable=not progress, desc=desc, unit="file", position=position,
              dynamic_ncols=True) as bar:
        # EmotionRecognizer.decode is decode_audio, a module-level function of the path: cheap to send to the workers.
        for chunk in _decoded_chunks(pending, recognizer.decode, workers, chunk_size, writer.fileno()):
            predictions = _predict_chunk(recognizer, chunk, **options)
            decision = recognizer.decision(options["classes"], options["min_confidence"])
            rows = [row for p in predictions for row in prediction_rows(
                p, decision.classes, embedding=options["return_embedding"], segments=options["segments"] is not None,
                dimensions=decision.dimensions)]
            # A file cut short by a kill has some of its segments' rows already: each row is written once.
            writer.write([row for row in rows
                          if row_key(row_text(row["source"]), row.get("segment")) not in writer.done])
            failed = sum(p.error is not None for p in predictions)
            errors += failed
            done += len(predictions) - failed
            bar.update(len(predictions))
            bar.set_postfix(errors=errors, refresh=False)
            if delay:
                time.sleep(delay)
    return done, errors


def _decoded_chunks(pending: list[InputItem], decode, workers: int, chunk_size: int,
                    output_fd: int) -> Iterator[list[DecodedInput]]:
    if not pending:
        return
    # On Linux the workers are forked (explicitly: Python 3.14 defaults to forkserver) and set up by
    # _init_decode_worker; elsewhere they are spawned, which inherits no descriptor and so no lock.
    forked = bool(workers) and sys.platform.startswith("linux")
    init = functools.partial(_init_decode_worker, os.getpid(), output_fd) if forked else None
    loader = DataLoader(pending, batch_size=LOADER_BATCH, shuffle=False, num_workers=workers,
                        collate_fn=functools.partial(_decode_items, decode), prefetch_factor=2 if workers else None,
                        persistent_workers=False, worker_init_fn=init,
                        multiprocessing_context=multiprocessing.get_context("fork" if forked else "spawn") if workers
                        else None)
    chunk: list[DecodedInput] = []
    for decoded in loader:
        chunk.extend(decoded)
        if len(chunk) >= chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _init_decode_worker(job_pid: int, output_fd: int, worker_id: int) -> None:
    """A forked worker (Linux) shares the output file's lock: it dies with the job and closes its copy of the
    descriptor, so a job killed with SIGKILL leaves no worker holding the lock against a rerun."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != job_pid:  # the job died before the request above took effect
        os._exit(1)
    try:
        os.close(output_fd)
    except OSError:
        pass


def _predict_chunk(recognizer, chunk: list[DecodedInput], **options) -> list[Prediction]:
    """The chunk's predictions in input order: decoding failures as error rows, the rest predicted."""
    table = options["segments"]
    if isinstance(table, Mapping):
        for decoded in chunk:
            if decoded.error is None and segments_for(table, decoded.source) is None:
                decoded.error = f"{decoded.source}: the segments file names no segments for this recording"
    usable = [d for d in chunk if d.error is None and not d.streamed]
    try:
        predicted = _predict_waveforms(recognizer, usable, **options)
    except ValueError:
        # One input the recognizer refuses (rather than reporting in its row) must not cost the others.
        predicted = []
        for decoded in usable:
            try:
                predicted.extend(_predict_waveforms(recognizer, [decoded], **options))
            except ValueError as error:
                predicted.append(_failed(decoded.source, _error_text(error), decoded.duration_s))
    by_source = iter(predicted)
    predictions = [_failed(d.source, d.error, d.duration_s) if d.error is not None
                   else _predict_streamed(recognizer, d, options) if d.streamed
                   else next(by_source) for d in chunk]
    return [dataclasses.replace(p, warning=d.warning) if d.warning and p.error is None else p
            for p, d in zip(predictions, chunk)]


def _predict_streamed(recognizer, decoded: DecodedInput, options: dict) -> Prediction:
    """A long file, read window by window by the recognizer in this process; whatever goes wrong is its row."""
    try:
        return recognizer.predict([decoded.source], **_per_item(options, [decoded.source]))[0]
    except Exception as error:
        return _failed(decoded.source, _error_text(error), None)


def _predict_waveforms(recognizer, decoded: list[DecodedInput], **options) -> list[Prediction]:
    if not decoded:
        return []
    sources = [d.source for d in decoded]
    predictions = recognizer.predict_waveforms([d.wave for d in decoded], sources, **_per_item(options, sources))
    if [str(p.source) for p in predictions] != sources:
        raise RuntimeError("the recognizer returned predictions for other inputs than it was given "
                           f"({len(predictions)} for {len(sources)})")
    return list(predictions)


def _per_item(options: dict, sources: list[str]) -> dict:
    """The recognizer's options for ``sources``: a segments table as each source's own segments."""
    table = options["segments"]
    if not isinstance(table, Mapping):
        return options
    return {**options, "segments": [segments_for(table, source) for source in sources]}


def _failed(source: str, error: str, duration_s: float | None) -> Prediction:
    return Prediction(source=source, label=None, probabilities={}, duration_s=duration_s, error=error)


def _error_text(error: BaseException) -> str:
    text = str(error).strip()
    return text if isinstance(error, ValueError) and text else f"{type(error).__name__}: {text or 'no message'}"


def _test_delay() -> float:
    value = os.environ.get(DELAY_ENV, "")
    try:
        delay = float(value) if value else 0.0
    except ValueError:
        raise ValueError(f"{DELAY_ENV}={value!r}: expected a number of seconds") from None
    return max(delay, 0.0)


def _check_job_args(recognizer, workers) -> None:
    for name in ("classes", "decision", "predict_waveforms", "decode"):
        if not hasattr(recognizer, name):
            raise TypeError(f"recognizer must be an EmotionRecognizer (no attribute {name!r} on "
                            f"{type(recognizer).__name__})")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise ValueError(f"workers must be an int >= 0 (0 decodes in this process), got {workers!r}")


def _unique_items(sources) -> list[InputItem]:
    if isinstance(sources, (str, os.PathLike, InputItem)):
        raise TypeError(f"sources must be a sequence of inputs, not one ({sources!r}); wrap it in a list")
    items, seen = [], set()
    for source in sources:
        if isinstance(source, (str, os.PathLike)):
            source = InputItem(str(source))
        elif not isinstance(source, InputItem):
            raise TypeError(f"every source must be an InputItem or a path, got {type(source).__name__}: {source!r}")
        if source.source not in seen:
            seen.add(source.source)
            items.append(source)
    return items


def _resolve_shard(shard) -> tuple[int, int, bool, bool]:
    """(rank, world_size, whether the ranks meet to merge, whether this call created the process group)."""
    if shard is not None:
        if not (isinstance(shard, tuple) and len(shard) == 2):
            raise ValueError(f"shard must be (rank, world_size), got {shard!r}")
        shard_path("x.jsonl", *shard)
        rank, world_size = shard
        meet = world_size > 1 and dist.is_available() and dist.is_initialized() and (
            dist.get_rank(), dist.get_world_size()) == (rank, world_size)
        return rank, world_size, meet, False
    if dist.is_available() and dist.is_initialized():
        world_size = dist.get_world_size()
        return dist.get_rank(), world_size, world_size > 1, False
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, False, False
    if "RANK" not in os.environ:
        raise ValueError(f"WORLD_SIZE={world_size} but RANK is not set; launch sharded runs with torchrun, or pass "
                         "shard=(rank, world_size)")
    rank = int(os.environ["RANK"])
    # torchrun exports MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE for the env:// rendezvous.
    dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    return rank, world_size, True, True


def _done_in_other_files(out_path: Path, write_path: Path, columns: tuple[str, ...]) -> set[str]:
    """Sources already in the merged output or in parts left by a run with another world size."""
    world = write_path.name.rsplit("-of-", 1)[-1]  # parts of this world size (this rank and its peers) are not read
    others = [out_path] if out_path.is_file() else []
    others += [p for p in shard_parts(out_path) if p.name.rsplit("-of-", 1)[-1] != world]
    return {key for path in others for key, _ in read_records(path, columns)}


def _meet_and_merge(counts: list[int], out_path: Path, items: list[InputItem], columns: tuple[str, ...],
                    rank: int) -> list[int]:
    # The sum is also the barrier: it returns only when every rank has written its whole part.
    totals = torch.tensor(counts, dtype=torch.int64)
    dist.all_reduce(totals)
    if rank == 0:
        _merge(out_path, items, columns)
    # A second meeting, so that no rank returns before the merged output is complete.
    dist.barrier()
    return [int(v) for v in totals]


def _merge(out_path: Path, items: list[InputItem], columns: tuple[str, ...]) -> int:
    parts = shard_parts(out_path)
    found: dict[str, dict[str, str]] = {}  # a source's rows (its segments', then its own), by row key
    for part in parts:
        for key, text in read_records(part, columns):
            found.setdefault(file_of(key), {}).setdefault(key, text)
    with RowWriter(out_path, columns) as writer:
        keys = [row_text(item.source) for item in items]
        missing = [key for key in keys if key not in writer.done and key not in found.get(key, {})]
        records = [(row, text) for key in keys if key not in writer.done
                   for row, text in found.get(key, {}).items() if row not in writer.done]
        writer.write_records(records)
    if missing:
        logger.warning("%d inputs have no row in %s or its parts (first: %s); parts kept", len(missing), out_path,
                       missing[0])
    else:
        for part in parts:
            part.unlink()
    return len(records)
