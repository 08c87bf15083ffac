"""The inference graph against the model as trained: BatchNorm folding, channels_last and padded
lengths give the same outputs; bf16 agrees with fp32 on a trained model; torch.compile runs; and
length buckets cover every item once."""

from __future__ import annotations

import random

import pytest
import torch
from helpers import assert_close
from torch import nn

from ser_fast.data.features import extract_features
from ser_fast.data.loaders import load_corpus
from ser_fast.data.synthetic import synthesize_corpus
from ser_fast.inference.batching import length_buckets
from ser_fast.inference.graph import InferenceGraph, LogitsAndEmbedding, fold_batchnorm
from ser_fast.models import EDRLMEA, Baseline, DSNet
from ser_fast.runs.config import TrainConfig
from ser_fast.runs.saved import load_model
from ser_fast.training.run import train_run

pytestmark = pytest.mark.usefixtures("one_thread")

NUM_CLASSES = 4
# Folding changes the order of float32 operations: w·(x−μ)/σ+β against (w/σ)·x+(β−wμ/σ). After four
# conv blocks the logits differ by a few 1e-6; 1e-5 is that with a margin. EDRL-MEA's readout divides
# by the spread of its training scores, which scales the rounding of every logit with the largest
# one (tens on random inputs): hence a term relative to the tensor's largest magnitude, not to each
# element (a logit near 0 beside one of 66 was 2e-5 off; 3e-7 of the scale).
FOLD_ATOL = 1e-5
FOLD_RTOL = 1e-5


def assert_fold_close(actual: torch.Tensor, expected: torch.Tensor, msg: str) -> None:
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    assert_close(actual, expected, atol=FOLD_ATOL + FOLD_RTOL * scale, msg=msg)


def features(batch: int, frames: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 3, frames, 80, generator=torch.Generator().manual_seed(seed))


def with_random_batchnorm(model: nn.Module, seed: int) -> nn.Module:
    """Running statistics and affine parameters far from their initial 0/1, so folding is tested on
    numbers that matter (a fresh BatchNorm is the identity and would fold to nothing)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = module.num_features
                module.running_mean.copy_(0.5 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                module.weight.copy_(1 + 0.3 * torch.randn(n, generator=generator))
                module.bias.copy_(0.2 * torch.randn(n, generator=generator))
    return model.eval()


def build(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "baseline":
        return with_random_batchnorm(Baseline(NUM_CLASSES), 1)
    if kind == "dsnet":
        return with_random_batchnorm(DSNet(NUM_CLASSES), 2)
    model = with_random_batchnorm(EDRLMEA(NUM_CLASSES, n_components=6), 3)
    x, labels = features(24, 32, seed=4), torch.arange(24) % NUM_CLASSES
    return model.fit_alignment([(x, labels, None)]).eval()


KINDS = ["baseline", "dsnet", "edrl-mea"]


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    return {kind: build(kind) for kind in KINDS}


def padded_lengths(batch: int, frames: int) -> torch.Tensor:
    """The full length, then shorter ones down to 1 frame (padding in the same batch)."""
    return torch.tensor([frames, *[max(1, frames - 7 * (i + 1)) for i in range(batch - 2)], 1])[:batch]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("frames", [17, 63, 151], ids=lambda t: f"T{t}")
def test_folded_graph_equals_the_model_as_trained(models, kind, frames):
    model = models[kind]
    x, lengths = features(3, frames, seed=frames), padded_lengths(3, frames)
    with torch.no_grad():
        expected_logits, expected_embedding = LogitsAndEmbedding(model)(x, lengths)
        assert torch.equal(expected_logits, model(x, lengths)), "LogitsAndEmbedding must be the model's forward"
    fast_logits, fast_embedding = InferenceGraph(model, mode="fast", precision="fp32")(x, lengths)
    assert_fold_close(fast_logits, expected_logits, msg=f"{kind} T={frames} logits")
    assert_fold_close(fast_embedding, expected_embedding, msg=f"{kind} T={frames} embedding")
    plain_logits, plain_embedding = InferenceGraph(model, mode="plain")(x, lengths)
    assert torch.equal(plain_logits, expected_logits) and torch.equal(plain_embedding, expected_embedding)


@pytest.mark.parametrize("kind", KINDS)
def test_a_padded_utterance_gives_its_unpadded_output_in_the_fast_graph(models, kind):
    graph = InferenceGraph(models[kind], precision="fp32")
    x = features(1, 63, seed=7)
    alone_logits, alone_embedding = graph(x[:, :, :40], None)
    padded = torch.cat([x[:, :, :40], torch.full((1, 3, 23, 80), 9.0)], dim=2)
    logits, embedding = graph(padded, torch.tensor([40]))
    assert_fold_close(logits, alone_logits, msg=f"{kind} padded logits")
    assert_fold_close(embedding, alone_embedding, msg=f"{kind} padded embedding")


@pytest.mark.parametrize("kind", KINDS)
def test_folding_replaces_every_batchnorm_and_leaves_the_model_alone(models, kind):
    model = models[kind]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert norms and not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in folded.modules())
    convs = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(conv.bias is not None for conv in convs)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("kind", KINDS)
def test_channels_last_equals_contiguous(models, kind):
    folded = fold_batchnorm(models[kind])
    x, lengths = features(3, 63, seed=8), padded_lengths(3, 63)
    with torch.no_grad():
        contiguous = LogitsAndEmbedding(folded)(x, lengths)
        channels_last = LogitsAndEmbedding(folded.to(memory_format=torch.channels_last))(
            x.contiguous(memory_format=torch.channels_last), lengths)
    for a, b, name in zip(channels_last, contiguous, ("logits", "embedding")):
        assert_fold_close(a, b, msg=f"{kind} channels_last {name}")


TRAINED = {"baseline": {}, "dsnet": {}, "edrl-mea": {"n_components": 8}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Baseline, DSNet and EDRL-MEA trained for 2 epochs on the tiny synthetic corpus, and that
    corpus' features as evaluation feeds them (32 frames). One epoch's Baseline and DSNet still give
    every utterance the same class; the aligned EDRL-MEA spreads them over the classes, which is
    what makes the label agreement a real check."""
    workspace = tmp_path_factory.mktemp("graph")
    corpus = load_corpus("iemocap", synthesize_corpus(workspace / "corpus", speakers=4, per_class=2, seed=4))
    table = extract_features(corpus.utterances, corpus.classes)
    models = {}
    for kind, settings in TRAINED.items():
        config = TrainConfig(model=kind, epochs=2, max_frames=32, precision="fp32", **settings)
        train_run(corpus, workspace / kind, config, folds=[0], table=table)
        models[kind] = load_model(next((workspace / kind / "folds").iterdir()))[0]
    x, lengths = table.batch(list(range(len(table))), 32)
    return models, x, lengths


# bf16 keeps 8 bits of mantissa (relative rounding 2^-9 per operation). Through four conv blocks and
# the heads, these models' probabilities move by up to 0.03 (EDRL-MEA, whose readout divides by the
# spread of its training scores) and 0.002 (Baseline, DSNet); 0.05 bounds all three.
BF16_PROBABILITY_ATOL = 0.05
BF16_MIN_LABEL_AGREEMENT = 0.9


@pytest.mark.parametrize("kind", list(TRAINED))
def test_bf16_agrees_with_fp32_on_a_trained_model(trained, kind):
    models, x, lengths = trained
    fp32 = InferenceGraph(models[kind], precision="fp32")
    bf16 = InferenceGraph(models[kind], precision="bf16")
    assert bf16.bf16 and not fp32.bf16
    p32 = torch.softmax(fp32(x, lengths)[0], dim=1)
    p16 = torch.softmax(bf16(x, lengths)[0], dim=1)
    assert_close(p16, p32, atol=BF16_PROBABILITY_ATOL, msg=f"{kind} bf16 probabilities")
    agreement = float((p16.argmax(1) == p32.argmax(1)).float().mean())
    assert agreement >= BF16_MIN_LABEL_AGREEMENT, f"{kind}: bf16 labels agree with fp32 on {agreement:.0%}"
    if kind == "edrl-mea":
        assert len(p32.argmax(1).unique()) >= 3, "the agreement check needs a model that predicts several classes"


def test_compiled_graph_equals_the_eager_graph(models):
    """torch.compile of the conv blocks, on two shapes (dynamic). Compiling costs about 6 s with
    Inductor's cache warm (about 40 s on a cold cache on a 2-core machine)."""
    if not hasattr(torch, "compile"):
        pytest.skip(f"torch {torch.__version__} has no torch.compile")
    eager = InferenceGraph(models["baseline"], precision="fp32")
    compiled = InferenceGraph(models["baseline"], precision="fp32", compile=True)
    assert compiled.compiled
    # One item, nothing padded, padded batches, and a batch over 16 items (the trunk's second variant).
    for batch, frames, padded in ((3, 17, True), (3, 63, True), (1, 17, False), (1, 63, True), (20, 40, True)):
        x = features(batch, frames, seed=frames + batch)
        lengths = padded_lengths(batch, frames) if padded else None
        for a, b, name in zip(compiled(x, lengths), eager(x, lengths), ("logits", "embedding")):
            assert_fold_close(a, b, msg=f"compiled B={batch} T={frames} {name}")


@pytest.mark.parametrize("kind", KINDS)
def test_the_whole_inference_graph_compiles_with_no_graph_break(models, kind):
    """``torch.compile(fullgraph=True)`` of the model's inference graph (checks, encoder with its
    masks and attention-pool op, head) on padded batches: one graph, no break anywhere (a break
    would raise), and the eager outputs. The checks that read values run in the eager caller."""
    module = LogitsAndEmbedding(models[kind])
    compiled = torch.compile(module, fullgraph=True, dynamic=True, backend="aot_eager")
    for batch, frames in ((3, 17), (5, 63)):
        x, lengths = features(batch, frames, seed=7 * frames), padded_lengths(batch, frames)
        with torch.no_grad():
            for a, b, name in zip(compiled(x, lengths), module(x, lengths), ("logits", "embedding")):
                assert_fold_close(a, b, msg=f"{kind} compiled B={batch} T={frames} {name}")


@pytest.mark.parametrize("arguments, error, pattern", [
    pytest.param({"mode": "turbo"}, ValueError, "mode 'turbo'", id="mode"),
    pytest.param({"precision": "fp8"}, ValueError, "precision 'fp8'", id="precision"),
    pytest.param({"mode": "plain", "precision": "bf16"}, ValueError, "fp32 eager reference", id="plain-bf16"),
    pytest.param({"mode": "plain", "compile": True}, ValueError, "fp32 eager reference", id="plain-compile"),
    pytest.param({"compile": "yes"}, TypeError, "compile must be a bool", id="compile-type"),
])
def test_bad_graph_arguments_are_explained(models, arguments, error, pattern):
    with pytest.raises(error, match=pattern):
        InferenceGraph(models["baseline"], **arguments)


def test_only_the_cnn_models_have_a_graph():
    with pytest.raises(TypeError, match="Baseline, DSNet or EDRLMEA"):
        InferenceGraph(nn.Linear(3, 4))


LENGTH_SETS = {
    "one": [63],
    "equal": [17] * 9,
    "odd": [1, 151, 63, 17, 63, 2, 500, 151, 40, 63, 0],
    "random": [random.Random(5).randrange(1, 600) for _ in range(151)],
}


@pytest.mark.parametrize("name", list(LENGTH_SETS))
@pytest.mark.parametrize("batch_size", [1, 4, 7])
@pytest.mark.parametrize("cap", [None, 600], ids=["no-cap", "cap600"])
def test_length_buckets_cover_every_item_once_longest_first(name, batch_size, cap):
    lengths = LENGTH_SETS[name]
    batches = length_buckets(lengths, batch_size, max_batch_frames=cap)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert all(1 <= len(batch) <= batch_size for batch in batches)
    flat = [lengths[i] for batch in batches for i in batch]
    assert flat == sorted(lengths, reverse=True)
    if cap is not None:
        assert all(len(b) == 1 or len(b) * max(lengths[i] for i in b) <= cap for b in batches)
    if cap is None:
        assert len(batches) == -(-len(lengths) // batch_size), "only the last batch may be short"


@pytest.mark.parametrize("arguments, error, pattern", [
    pytest.param(([3, 4], 0), ValueError, "batch_size must be a positive int", id="batch-size-0"),
    pytest.param(([3, 4], True), ValueError, "batch_size must be a positive int", id="batch-size-bool"),
    pytest.param(([3, -1], 2), ValueError, r"lengths\[1\] is -1", id="negative-length"),
    pytest.param(([3, 2.5], 2), ValueError, r"lengths\[1\] is 2.5", id="float-length"),
    pytest.param(("abc", 2), TypeError, "sequence of ints", id="string"),
])
def test_bad_bucket_arguments_are_explained(arguments, error, pattern):
    with pytest.raises(error, match=pattern):
        length_buckets(*arguments)
    with pytest.raises(ValueError, match="max_batch_frames"):
        length_buckets([3], 2, max_batch_frames=0)


def test_no_items_give_no_batches():
    assert length_buckets([], 4) == []
