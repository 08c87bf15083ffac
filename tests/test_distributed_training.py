"""Training under torchrun (DDP over gloo on loopback) gives the weights one process gives with the same
global batch; one process is the plain trainer, untouched.

Three levels:
- the helpers in-process: row shares, torchrun's variables, dropout masks that do not depend on the
  process holding a row;
- one process against two (torch.multiprocessing, gloo) for two training steps in float64, where the
  forward pass has no rounding to speak of: every gradient, the loss scaling over unequal shares, the
  whole-batch BatchNorm moments and the batch-level losses (DSNet's L_o, EDRL-MEA's SupCon) are
  checked to 1e-6 of each tensor's scale;
- the real launcher (``python -m torch.distributed.run --nproc_per_node 2 -m ser_fast train``) against
  ``ser_fast train`` in one process, in float32, and a run stopped after its first epoch and resumed
  under the launcher.

Why the float32 runs are not compared element by element at 1e-5: Adam divides each gradient element
by its own running magnitude, so an element whose gradient is rounding noise moves by ±lr per step
whatever the noise's size. Two parameters have an exactly zero true gradient (``GAUGE``) and are
nothing but that noise in any run; elsewhere a pre-activation within rounding of a ReLU's kink flips
a whole BatchNorm channel's gradient by a few percent (a one-process run with 2 threads instead of 1
does the same). So each tensor's distance between the runs is compared with how far training moved
it: at most 2 % (measured: 0.01–0.3 %; two processes with plain per-process BatchNorm and dropout:
about 130 %), and the gauge parameters with Adam's bound of lr per step.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import assert_close
from safetensors.torch import load_file, save_file
from torch import nn

from ser_fast.data.corpus import Utterance
from ser_fast.data.features import FeatureTable, extract_features
from ser_fast.data.loaders import load_corpus
from ser_fast.data.synthetic import synthesize_corpus
from ser_fast.runs.config import TrainConfig
from ser_fast.runs.registry import model_kind
from ser_fast.training.cnn_task import CNNTask, FoldData, check_batches_split, train_fold
from ser_fast.training.distributed import (
    BatchDropout,
    GlobalBatchNorm1d,
    GlobalBatchNorm2d,
    World,
    backend_for,
    batch_rows,
    broadcast_from_main,
    convert_for_data_parallel,
    is_main,
    join_world,
    row_share,
)
from ser_fast.training.run import make_folds, train_run

REPO = Path(__file__).resolve().parents[1]
NUM_CLASSES = 4
# Parameters whose true gradient is exactly 0: the classifier's Linear bias right before its
# BatchNorm (which subtracts the batch mean) and the attention score's offset (softmax over time
# ignores it). Adam moves them by ±lr per step on rounding noise.
GAUGE = ("classifier.net.0.bias", "encoder.temporal_pool.scorer.2.bias")
TRAJECTORY_RTOL = 0.02


@pytest.mark.parametrize(("total", "size", "expected"), [
    pytest.param(5, 2, [(0, 3), (3, 5)], id="5-rows-2-procs"),
    pytest.param(6, 2, [(0, 3), (3, 6)], id="6-rows-2-procs"),
    pytest.param(7, 3, [(0, 3), (3, 5), (5, 7)], id="7-rows-3-procs"),
    pytest.param(3, 3, [(0, 1), (1, 2), (2, 3)], id="3-rows-3-procs"),
    pytest.param(151, 4, [(0, 38), (38, 76), (76, 114), (114, 151)], id="151-rows-4-procs"),
])
def test_row_share_is_contiguous_and_balanced(total, size, expected):
    shares = [row_share(total, World(rank=rank, size=size)) for rank in range(size)]
    assert [(s.start, s.stop) for s in shares] == expected
    assert all(s.total == total for s in shares)


@pytest.mark.parametrize(("rows", "batch_size", "size", "fits"), [
    pytest.param(11, 5, 2, True, id="11-in-5s-2-procs"),
    pytest.param(12, 5, 3, False, id="12-in-5s-3-procs-last-2"),
    pytest.param(16, 5, 2, True, id="16-in-5s-last-1-skipped"),
    pytest.param(63, 8, 8, False, id="63-in-8s-8-procs-last-7"),
])
def test_every_batch_must_give_each_process_a_row(rows, batch_size, size, fits):
    world = World(rank=0, size=size)
    if fits:
        check_batches_split(rows, batch_size, world)
    else:
        with pytest.raises(ValueError, match=f"too few for {size} processes"):
            check_batches_split(rows, batch_size, world)


def test_row_share_refuses_a_process_without_rows():
    with pytest.raises(ValueError, match="cannot be split across 3 processes"):
        row_share(2, World(rank=0, size=3))


@pytest.mark.parametrize(("environ", "expected"), [
    pytest.param({}, (0, 1, 0), id="no-torchrun"),
    pytest.param({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}, (3, 4, 1), id="rank-3-of-4"),
    pytest.param({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}, (0, 1, 0), id="one-process"),
])
def test_world_from_torchrun_variables(environ, expected):
    world = World.from_env("cpu", environ)
    assert (world.rank, world.size, world.local_rank) == expected
    assert world.enabled == (expected[1] > 1)
    assert world.is_main == (expected[0] == 0)


@pytest.mark.parametrize(("environ", "message"), [
    pytest.param({"WORLD_SIZE": "2", "RANK": "0"}, "LOCAL_RANK", id="partial"),
    pytest.param({"WORLD_SIZE": "two", "RANK": "0", "LOCAL_RANK": "0"}, "integers", id="not-int"),
    pytest.param({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"}, "RANK < WORLD_SIZE", id="rank-too-big"),
])
def test_world_refuses_bad_torchrun_variables(environ, message):
    with pytest.raises(ValueError, match=message):
        World.from_env("cpu", environ)


def test_cuda_device_under_torchrun_is_the_local_rank():
    environ = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}
    assert World.from_env("cuda", environ).device == torch.device("cuda", 1)
    assert backend_for("cuda") == "nccl" and backend_for("cpu") == "gloo"
    with pytest.raises(ValueError, match="expected one of"):
        backend_for("tpu")


def test_one_process_initialises_nothing(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    world = join_world("cpu")
    assert not world.enabled and not dist.is_initialized() and is_main()
    assert broadcast_from_main([1.5, 2.0], world) == [1.5, 2.0]


def test_conversion_keeps_parameters_and_state_dict_keys():
    torch.manual_seed(0)
    model = model_kind("dsnet").build(TrainConfig(model="dsnet"), NUM_CLASSES)
    before = {name: tensor for name, tensor in model.state_dict().items()}
    parameters = list(model.parameters())
    convert_for_data_parallel(model)
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(after[name] is before[name] or after[name].data_ptr() == before[name].data_ptr() for name in before)
    assert [p is q for p, q in zip(model.parameters(), parameters)] == [True] * len(parameters)
    assert isinstance(model.classifier.net[1], GlobalBatchNorm1d)
    assert isinstance(model.encoder.blocks[0].main[1], GlobalBatchNorm2d)
    assert isinstance(model.classifier.net[3], BatchDropout)


def test_conversion_refuses_dropout_it_cannot_make_process_independent():
    with pytest.raises(TypeError, match="Dropout2d"):
        convert_for_data_parallel(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Dropout2d(0.2)))


@pytest.mark.parametrize(("rows", "size"), [pytest.param(7, 3, id="7-rows-3-procs"),
                                            pytest.param(5, 2, id="5-rows-2-procs"),
                                            pytest.param(63, 4, id="63-rows-4-procs")])
def test_batch_dropout_gives_each_row_its_one_process_mask(rows, size):
    x = torch.randn(rows, 64)
    torch.manual_seed(3)
    expected = nn.Dropout(0.3).train()(x)
    for rank in range(size):
        share = row_share(rows, World(rank=rank, size=size))
        dropout = BatchDropout(0.3).train()
        torch.manual_seed(3)
        with batch_rows(dropout, share):
            out = dropout(x[share.start:share.stop])
        assert_close(out, expected[share.start:share.stop], atol=0, msg=f"rank {rank} of {size}")


def test_batch_dropout_needs_its_share():
    with pytest.raises(RuntimeError, match="batch_rows"):
        BatchDropout(0.3).train()(torch.ones(2, 4))


FP64_CASES = [("baseline", 5), ("baseline", 6), ("dsnet", 5), ("dsnet", 6), ("edrl-mea", 5)]
FP64_SPEAKERS = 3


def _fp64_fold(rows: int) -> FoldData:
    """``2 * rows`` training utterances of odd lengths (17..40 frames), all four classes, three speakers,
    and one neutral reference per speaker, as float64 features."""
    generator = torch.Generator().manual_seed(rows)
    count = 2 * rows + FP64_SPEAKERS
    classes = ("neutral", "happy", "sad", "angry")
    labels = [i % NUM_CLASSES if i < 2 * rows else 0 for i in range(count)]
    utterances = [Utterance(Path(f"u{i}.wav"), classes[labels[i]], f"spk{i % FP64_SPEAKERS}", "fake")
                  for i in range(count)]
    features = [torch.randn(3, 17 + (7 * i) % 24, 80, generator=generator, dtype=torch.float64) for i in range(count)]
    table = FeatureTable(utterances, features, torch.tensor(labels))
    neutral = {f"spk{i % FP64_SPEAKERS}": i for i in range(2 * rows, count)}
    return FoldData(table, list(range(2 * rows)), [0], neutral)


def _fp64_steps(model_name: str, rows: int, world: World) -> dict[str, torch.Tensor]:
    """Two SGD steps (batches of ``rows``) by the world and, on rank 0, by one process, from the same
    weights and generator state: losses, each step's gradients, the final state dict."""
    config = TrainConfig(model=model_name, batch_size=rows, max_frames=32, precision="fp32", channels_last=False,
                         n_components=4)
    data = _fp64_fold(rows)
    batches = [data.train[:rows], data.train[rows:][::-1]]
    torch.manual_seed(0)
    single = model_kind(config.model).build(config, NUM_CLASSES).double()
    classes = tuple(str(c) for c in range(NUM_CLASSES))
    sharded = CNNTask(data, config, None, classes, world, model=copy.deepcopy(single))
    sharded.after_resume()  # wraps the model in DDP
    out = {}
    runs = [("sharded", sharded)]
    if world.is_main:
        runs.append(("single", CNNTask(data, config, None, classes, World(), model=single)))
    for tag, task in runs:
        model = task.model
        task.optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        torch.manual_seed(1)
        for i, batch in enumerate(batches):
            scalars = task.step(batch)
            out[f"{tag}/step{i}/losses"] = torch.tensor([scalars[k] for k in sorted(scalars)], dtype=torch.float64)
            out.update({f"{tag}/step{i}/grad/{name}": p.grad.clone() for name, p in model.named_parameters()
                        if p.grad is not None})
        out.update({f"{tag}/state/{name}": t.clone() for name, t in model.state_dict().items()})
    return {f"{model_name}-{rows}/{key}": value for key, value in out.items()}


def _fp64_worker(rank: int, size: int, port: int, out_file: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=size)
    try:
        world = World(rank=rank, size=size)
        results = {}
        for model_name, rows in FP64_CASES:
            results.update(_fp64_steps(model_name, rows, world))
        if rank == 0:
            save_file({k: v.contiguous() for k, v in results.items()}, out_file)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def fp64_steps(tmp_path_factory) -> dict[str, torch.Tensor]:
    out_file = tmp_path_factory.mktemp("fp64") / "steps.safetensors"
    mp.spawn(_fp64_worker, args=(2, _free_port(), str(out_file)), nprocs=2)
    return load_file(str(out_file))


@pytest.mark.parametrize(("model_name", "rows"), FP64_CASES, ids=[f"{m}-{r}-rows" for m, r in FP64_CASES])
def test_two_processes_compute_the_one_process_gradients(fp64_steps, model_name, rows):
    case = f"{model_name}-{rows}"
    single = {k.removeprefix(f"{case}/single/"): v for k, v in fp64_steps.items() if k.startswith(f"{case}/single/")}
    sharded = {k.removeprefix(f"{case}/sharded/"): v for k, v in fp64_steps.items() if k.startswith(f"{case}/sharded/")}
    assert sorted(sharded) == sorted(single), "the same parameters get gradients"
    for step in (0, 1):
        assert_close(sharded[f"step{step}/losses"], single[f"step{step}/losses"], atol=0, rtol=1e-6,
                     msg=f"{case} step {step} losses")
        grads = [k for k in single if k.startswith(f"step{step}/grad/")]
        # Losses are computed in float32 (from float64 activations), so gradients carry float32
        # rounding; a tensor whose true gradient is 0 (GAUGE) is held to the model's scale.
        everything = max(float(single[k].abs().max()) for k in grads)
        for key in grads:
            atol = 1e-6 * float(single[key].abs().max()) + 1e-9 * everything
            assert_close(sharded[key], single[key], atol=atol, msg=f"{case} {key}")
    for key in (k for k in single if k.startswith("state/")):
        if not single[key].is_floating_point():
            assert torch.equal(sharded[key], single[key]), f"{case} {key}"
            continue
        assert_close(sharded[key], single[key], atol=1e-7 * max(1.0, float(single[key].abs().max())),
                     msg=f"{case} {key} after two steps (BatchNorm running statistics included)")


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory) -> Path:
    return synthesize_corpus(tmp_path_factory.mktemp("ddp") / "corpus", speakers=4, per_class=2, seed=1)


@pytest.fixture(scope="module")
def table(corpus_root):
    corpus = load_corpus("iemocap", corpus_root)
    return extract_features(corpus.utterances, corpus.classes)


def _launch(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    """``args`` under the real launcher, ``nproc`` gloo processes on loopback."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", str(_free_port()), *args]
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=REPO, env=environ, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


# Each case is a configuration where float32 training is itself stable: a DSNet with 4–5 utterance
# batches can move 27 % of its training distance when only the thread count changes.
E2E_CASES = {"baseline-batch-5-shares-3-2": ("baseline", 5, {}),
             "dsnet-batch-7-shares-4-3": ("dsnet", 7, {}),
             "edrl-mea-batch-6-shares-3-3": ("edrl-mea", 6, {"n_components": 4})}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, corpus_root, table) -> dict[str, tuple[TrainConfig, Path, Path]]:
    """Per case: (config, fold folder trained by two processes under torchrun, by one process)."""
    corpus = load_corpus("iemocap", corpus_root)
    fold = make_folds(corpus, "loso")[0].name
    results = {}
    for case, (model_name, batch_size, extra) in E2E_CASES.items():
        config = TrainConfig(model=model_name, epochs=2, batch_size=batch_size, max_frames=32, precision="fp32",
                             **extra)
        out = tmp_path_factory.mktemp(case)
        train_run(corpus, out / "one", config, folds=[0], table=table)
        cli = ["-m", "ser_fast", "train", "--model", model_name, "--corpus", "iemocap", "--root", str(corpus_root),
               "--fold", "0", "--epochs", "2", "--batch-size", str(batch_size), "--max-frames", "32",
               "--precision", "fp32", "--quiet", "--out", str(out / "two")]
        if "n_components" in extra:
            cli += ["--components", str(extra["n_components"])]
        done = _launch(cli)
        assert done.stdout.count("run written to") == 1, "only rank 0 prints"
        results[case] = (config, out / "two" / "folds" / fold, out / "one" / "folds" / fold)
    return results


def _optimizer_steps(fold_dir: Path, config: TrainConfig) -> int:
    """At most this many optimizer steps trained the fold (every training utterance in batches)."""
    rows = len(json.loads((fold_dir / "fold.json").read_text())["train"])
    return config.epochs * -(-rows // config.batch_size)


def _assert_same_trajectory(run: dict, reference: dict, initial: dict, *, steps: int, lr: float, what: str) -> None:
    assert sorted(run) == sorted(reference), what
    for name, expected in reference.items():
        actual = run[name]
        if not expected.is_floating_point():
            assert torch.equal(actual, expected), f"{what} {name}"
        elif name in GAUGE:
            assert_close(actual, expected, atol=2 * lr * steps, msg=f"{what} {name} (gauge: Adam's bound)")
        else:
            moved = expected - initial[name] if name in initial else expected
            distance = float((actual.double() - expected.double()).norm())
            assert distance <= TRAJECTORY_RTOL * float(moved.double().norm()) + 1e-7, (
                f"{what} {name}: the runs are {distance:.3g} apart, training moved it {float(moved.norm()):.3g}")


@pytest.mark.parametrize("case", E2E_CASES)
def test_two_processes_train_the_one_process_weights(runs, case):
    config, two, one = runs[case]
    torch.manual_seed(config.seed)
    initial = model_kind(config.model).build(config, NUM_CLASSES).state_dict()
    for name in ("model.safetensors", "checkpoint-0002/model.safetensors"):
        _assert_same_trajectory(load_file(str(two / name)), load_file(str(one / name)), initial,
                                steps=_optimizer_steps(one, config), lr=config.learning_rate, what=f"{case} {name}")


@pytest.mark.parametrize("case", E2E_CASES)
def test_two_processes_log_and_decide_as_one(runs, case):
    config, two, one = runs[case]
    records = [[json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()] for run in (two, one)]
    assert len(records[0]) == len(records[1]) == config.epochs
    decisions = ("epoch", "val_uar", "val_wa", "lr")
    for mine, expected in zip(*records):
        assert {k: mine[k] for k in decisions} == {k: expected[k] for k in decisions}
        losses = sorted(k for k in expected if k.startswith(("train_", "val_loss")))
        assert sorted(k for k in mine if k.startswith(("train_", "val_loss"))) == losses
        assert_close(torch.tensor([mine[k] for k in losses]), torch.tensor([expected[k] for k in losses]), atol=1e-6,
                     rtol=1e-3, msg=f"{case} epoch {expected['epoch']} losses {losses}")
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir()), "rank 0 alone writes"


def test_torchrun_with_one_process_is_the_plain_trainer(monkeypatch, tmp_path, corpus_root, table):
    config = TrainConfig(model="baseline", epochs=1, batch_size=5, max_frames=32, precision="fp32")
    corpus = load_corpus("iemocap", corpus_root)
    train_run(corpus, tmp_path / "plain", config, folds=[0], table=table)
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    train_run(corpus, tmp_path / "torchrun", config, folds=[0], table=table)
    assert not dist.is_initialized()
    for path in (tmp_path / "plain").rglob("*.safetensors"):
        mine = load_file(str(tmp_path / "torchrun" / path.relative_to(tmp_path / "plain")))
        expected = load_file(str(path))
        assert all(torch.equal(mine[k], expected[k]) for k in expected), f"{path.name} differs"


def test_a_run_stopped_under_torchrun_resumes_to_the_uninterrupted_weights(runs, tmp_path, corpus_root):
    config, two, _ = runs["baseline-batch-5-shares-3-2"]
    _launch([__file__, "resume", str(corpus_root), str(tmp_path / "fold"), str(config.batch_size)])
    assert (tmp_path / "fold" / "stopped-after-epoch-1").is_file()
    for name in ("model.safetensors", "checkpoint-0002/model.safetensors"):
        mine, expected = load_file(str(tmp_path / "fold" / name)), load_file(str(two / name))
        assert all(torch.equal(mine[k], expected[k]) for k in expected), f"{name}: resumed weights differ"


class _Killed(Exception):
    pass


def _stop_after_first_epoch(record: dict) -> None:
    if record["epoch"] == 1:
        raise _Killed


def _resume_under_torchrun(root: str, out: str, batch_size: str) -> None:
    """Run by the launcher: train fold 0 as the baseline case does, stopped after epoch 1 (every process
    raises once the checkpoint is written, as a kill there would leave it), then resume it to the end."""
    corpus = load_corpus("iemocap", Path(root))
    fold = make_folds(corpus, "loso")[0]
    data = FoldData.build(extract_features(corpus.utterances, corpus.classes), fold.train, fold.validation, None)
    config = TrainConfig(model="baseline", epochs=2, batch_size=int(batch_size), max_frames=32, precision="fp32")
    try:
        train_fold(data, config, Path(out), classes=corpus.classes, on_epoch_end=_stop_after_first_epoch)
    except _Killed:
        if World.from_env().is_main:
            (Path(out) / "stopped-after-epoch-1").touch()
    train_fold(data, config, Path(out), classes=corpus.classes, resume=True)


if __name__ == "__main__" and sys.argv[1:2] == ["resume"]:
    _resume_under_torchrun(*sys.argv[2:])
