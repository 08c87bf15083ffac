"""EDRL-MEA: each intra-class encoder learns from its class only, shapes, the pooled input
statistics by hand, determinism, one MB-PLS block per EDRL block, an exact safetensors + JSON round
trip, resumable training, a short CLI run that beats chance clean and cross-corpus, and input checks."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from helpers import Killed, assert_close, kill_after
from safetensors.torch import load_file, save_file
from scipy import stats

from ser_fast.cli import main
from ser_fast.data.features import extract_features
from ser_fast.data.loaders import load_corpus
from ser_fast.data.protocols import loso_folds
from ser_fast.data.synthetic import synthesize_corpus
from ser_fast.models import EDRLMEA, MBPLS
from ser_fast.models.edrl_mea import input_statistics, supervised_contrastive_loss
from ser_fast.runs.checkpoint import latest_checkpoint
from ser_fast.runs.config import TrainConfig
from ser_fast.runs.saved import load_model
from ser_fast.training.cnn_task import FoldData, train_fold

NUM_CLASSES = 4
CODE_DIM = 64
LABELS = torch.tensor([0, 1, 2, 0, 3, 1, 0, 2])


@pytest.fixture(autouse=True)
def _one_thread():
    """Small convs on a shared 2-core machine run far faster on one thread; conftest restores it."""
    torch.set_num_threads(1)


def features(batch: int, frames: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 3, frames, 80, generator=torch.Generator().manual_seed(seed))


X4, Y4 = features(4, 32, seed=40), torch.tensor([0, 1, 2, 3])


def seeded(seed: int = 0, **kwargs) -> EDRLMEA:
    torch.manual_seed(seed)
    return EDRLMEA(NUM_CLASSES, **kwargs)


def aligned(model: EDRLMEA, seed: int = 1, batch: int = 24, frames: int = 32) -> EDRLMEA:
    """``model`` aligned on random utterances with every class present."""
    x = features(batch, frames, seed)
    labels = torch.arange(batch) % NUM_CLASSES
    lengths = torch.randint(16, frames + 1, (batch,), generator=torch.Generator().manual_seed(seed))
    return model.fit_alignment([(x[:10], labels[:10], lengths[:10]), (x[10:], labels[10:], lengths[10:])])


def intra_gradients(model: EDRLMEA, x: torch.Tensor, labels: torch.Tensor) -> list[list[torch.Tensor]]:
    model.zero_grad(set_to_none=False)
    model.training_losses(x, labels).total.backward()
    return [[p.grad.clone() for p in autoencoder.parameters()] for autoencoder in model.intra.autoencoders]


@pytest.mark.parametrize("cls", [pytest.param(c, id=f"class-{c}") for c in range(NUM_CLASSES)])
def test_each_intra_class_encoder_gets_gradient_only_from_its_own_class(cls):
    """Eval mode, so that each utterance's h depends on it alone (no batch statistics): replacing
    every utterance of the other classes leaves autoencoder ``cls``'s gradient bit for bit the same,
    and replacing one of its own class changes it."""
    model = seeded(dropout=0.0).eval()
    x = features(len(LABELS), 40, seed=3)
    before = intra_gradients(model, x, LABELS)
    others = x.clone()
    others[LABELS != cls] = features(int((LABELS != cls).sum()), 40, seed=4)
    after_others = intra_gradients(model, others, LABELS)
    own = x.clone()
    own[int((LABELS == cls).nonzero()[0, 0])] = features(1, 40, seed=5)[0]
    after_own = intra_gradients(model, own, LABELS)
    assert all(g.abs().sum() > 0 for g in before[cls]), "the encoder of a class in the batch must learn"
    assert all(torch.equal(a, b) for a, b in zip(before[cls], after_others[cls])), "other classes leaked in"
    assert not all(torch.equal(a, b) for a, b in zip(before[cls], after_own[cls])), "its own class must count"


def test_intra_class_loss_reads_only_its_rows_and_an_absent_class_learns_nothing():
    model = seeded()
    labels = torch.tensor([0, 0, 1, 3, 1])  # class 2 absent
    h = torch.randn(5, 256, requires_grad=True)
    losses = model.intra.losses(h, labels)
    assert losses[2] == 0
    for c in range(NUM_CLASSES):
        (grad,) = torch.autograd.grad(losses[c], h, retain_graph=True)
        rows = grad.abs().sum(dim=1) > 0
        assert torch.equal(rows, labels == c), f"class {c}: gradient reached rows {rows.tolist()}"
    model.training_losses(features(5, 32, seed=6), labels).total.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.intra.autoencoders[2].parameters())


def test_edrl_losses_leave_the_backbone_to_cross_entropy():
    model = seeded(dropout=0.0).eval()
    x = features(len(LABELS), 32, seed=7)
    losses = model.training_losses(x, LABELS)
    total = torch.autograd.grad(losses.total, list(model.encoder.parameters()), retain_graph=True)
    ce_only = torch.autograd.grad(losses.l_ce, list(model.encoder.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(total, ce_only))
    assert losses.total == losses.l_ce + losses.l_inter_rec + losses.l_inter_con + losses.l_intra
    assert set(losses.scalars()) == {"total", "l_ce", "l_inter_rec", "l_inter_con", "l_intra"}


def test_supervised_contrastive_loss_by_hand():
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(8))
    labels = torch.tensor([0, 1, 0, 2, 1])  # utterance 3 has no positive: not an anchor
    unit = z / z.norm(dim=1, keepdim=True)
    similarity = unit @ unit.T / 0.1
    expected = []
    for i in (0, 1, 2, 4):
        others = [a for a in range(5) if a != i]
        denominator = torch.logsumexp(similarity[i, others], dim=0)
        positives = [p for p in others if labels[p] == labels[i]]
        expected.append(-torch.stack([similarity[i, p] - denominator for p in positives]).mean())
    assert_close(supervised_contrastive_loss(z, labels), torch.stack(expected).mean(), atol=1e-6, msg="SupCon")
    lonely = supervised_contrastive_loss(z, torch.arange(5))
    assert lonely == 0 and lonely.requires_grad is False


@pytest.mark.parametrize("frames, lengths", [
    pytest.param(16, [16, 1, 9], id="T16-one-frame"),
    pytest.param(63, [63, 40, 2], id="T63"),
    pytest.param(151, [151, 150, 77], id="T151"),
])
def test_input_statistics_match_scipy_on_the_valid_frames(frames, lengths):
    x = features(len(lengths), frames, seed=frames)
    got = input_statistics(x, lengths).numpy()
    for b, n in enumerate(lengths):
        static = x[b, 0, :n].double().numpy()
        mean, std = static.mean(axis=0), static.std(axis=0)
        skew = stats.skew(static, axis=0) if n > 1 else np.zeros(80)
        centred = static - mean
        lag1 = (centred[1:] * centred[:-1]).sum(axis=0) / max(n - 1, 1) / np.maximum(std**2, 1e-8)
        assert_close(got[b], np.concatenate([mean, std, skew, lag1]), atol=1e-9, rtol=1e-9, msg=f"utterance {b}")


@pytest.mark.parametrize("variant, blocks, width", [
    pytest.param("full", NUM_CLASSES + 1, CODE_DIM, id="full"),
    pytest.param("edrl", NUM_CLASSES + 1, CODE_DIM, id="edrl"),
    pytest.param("mea", 1, 256, id="mea"),
])
@pytest.mark.parametrize("frames, lengths", [
    pytest.param(16, [16, 16, 16], id="T16"),
    pytest.param(63, [63, 17, 1], id="T63-padded"),
    pytest.param(151, [151, 100, 151], id="T151-padded"),
])
def test_shapes_and_padding(variant, blocks, width, frames, lengths):
    model = aligned(seeded(variant=variant, n_components=7)).eval()
    x = features(len(lengths), frames, seed=9)
    with torch.no_grad():
        logits = model(x, lengths)
        embedded = model.block_embeddings(x, lengths)
        joint = model.aligned_embedding(x, lengths)
        alone = model(x[1:2, :, :lengths[1]])
    assert logits.shape == (len(lengths), NUM_CLASSES) and logits.dtype == torch.float32
    assert [tuple(b.shape) for b in embedded] == [(len(lengths), width)] * blocks
    assert joint.shape == (len(lengths), blocks * width if variant == "edrl" else 7)
    assert_close(alone[0], logits[1], atol=1e-4, rtol=1e-4, msg="a padded utterance scores as it does alone")


@pytest.mark.parametrize("variant, blocks", [pytest.param("full", NUM_CLASSES + 1, id="full"),
                                             pytest.param("mea", 1, id="mea")])
def test_mbpls_has_one_block_per_edrl_block(variant, blocks):
    model = aligned(seeded(variant=variant, n_components=5))
    assert isinstance(model.mbpls, MBPLS) and model.mbpls.n_blocks == blocks
    assert model.mbpls.n_components == 5 and model.mbpls.method == "svd"
    assert model.mbpls.block_widths == ([CODE_DIM] * blocks if variant == "full" else [256])
    assert model.mbpls.n_targets <= 4 * 80


def test_forward_is_the_cross_entropy_head_until_aligned_then_the_aligned_classifier():
    model = seeded().eval()
    x = features(3, 40, seed=10)
    with torch.no_grad():
        head = model.classifier(model.encoder(x))
        assert torch.equal(model(x), head) and not model.is_aligned
        aligned(model)
        scores = model.mbpls.transform(model.block_embeddings(x)).float()
        expected = model.readout((scores - model.readout_mean) / model.readout_scale)
        assert model.is_aligned and torch.equal(model(x), expected)
        model.clear_alignment()
        assert torch.equal(model(x), head)


def test_same_seed_gives_the_same_weights_and_logits():
    def train_and_align(seed):
        model = seeded(seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for step in range(2):
            optimizer.zero_grad()
            model.training_losses(features(8, 32, seed=20 + step), LABELS).total.backward()
            optimizer.step()
        aligned(model)
        with torch.no_grad():
            return model.to_saved()[0], model.eval()(features(4, 32, seed=30))

    (weights_a, logits_a), (weights_b, logits_b) = train_and_align(0), train_and_align(0)
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert torch.equal(logits_a, logits_b)
    _, logits_c = train_and_align(1)
    assert not torch.equal(logits_a, logits_c), "a different seed should give a different model"


@pytest.mark.parametrize("variant", ["full", "edrl", "mea"])
def test_safetensors_and_json_round_trip_gives_identical_logits(variant, tmp_path):
    model = aligned(seeded(variant=variant, n_components=6)).eval()
    tensors, config = model.to_saved()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(config))
    rebuilt = seeded(5, variant=variant, n_components=6)
    loaded_config = json.loads((tmp_path / "config.json").read_text())
    rebuilt.load_saved(load_file(str(tmp_path / "model.safetensors")), loaded_config)
    x, lengths = features(5, 47, seed=11), [47, 20, 16, 33, 1]
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x, lengths), model(x, lengths))
    assert rebuilt.is_aligned and (rebuilt.mbpls is None) == (variant == "edrl")


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    root = synthesize_corpus(tmp_path_factory.mktemp("tiny") / "corpus", speakers=4, per_class=2, seed=5)
    corpus = load_corpus("iemocap", root)
    table = extract_features(corpus.utterances, corpus.classes)
    fold = loso_folds(corpus)[0]
    return corpus, FoldData.build(table, fold.train, fold.validation, None)


def test_a_killed_run_resumes_to_the_same_aligned_model(tiny_corpus, tmp_path):
    corpus, data = tiny_corpus
    config = TrainConfig(model="edrl-mea", epochs=2, batch_size=8, max_frames=32, precision="fp32", seed=3,
                         n_components=4)
    straight = train_fold(data, config, tmp_path / "straight", classes=corpus.classes)

    with pytest.raises(Killed):
        train_fold(data, config, tmp_path / "killed", classes=corpus.classes, on_epoch_end=kill_after(1))
    resumed = train_fold(data, config, tmp_path / "killed", classes=corpus.classes, resume=True)
    assert resumed == straight and "aligned_uar" in resumed
    a, b = load_file(str(tmp_path / "straight" / "model.safetensors")), load_file(str(tmp_path / "killed" /
                                                                                      "model.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("mea.mbpls.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "mea.mbpls.x_rotations" not in load_file(str(latest_checkpoint(tmp_path / "killed") / "model.safetensors"))
    model, loaded_config, classes = load_model(tmp_path / "killed")
    assert model.is_aligned and loaded_config == config and classes == corpus.classes

    # Killed between writing model.safetensors and config.json: resuming fits the alignment again.
    torn = json.loads((tmp_path / "killed" / "config.json").read_text())
    del torn["alignment"]
    (tmp_path / "killed" / "config.json").write_text(json.dumps(torn))
    with pytest.raises(ValueError, match=r"MB-PLS tensors .* but config has no MB-PLS config"):
        load_model(tmp_path / "killed")
    assert train_fold(data, config, tmp_path / "killed", classes=corpus.classes, resume=True) == straight
    again = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert all(torch.equal(a[k], again[k]) for k in a)


def test_the_variants_train_the_same_backbone_so_the_ablation_isolates_edrl_and_mea(tiny_corpus, tmp_path):
    corpus, data = tiny_corpus
    weights = {}
    for variant in ("full", "mea"):
        config = TrainConfig(model="edrl-mea", variant=variant, epochs=1, batch_size=8, max_frames=32,
                             precision="fp32", n_components=4)
        train_fold(data, config, tmp_path / variant, classes=corpus.classes)
        weights[variant] = load_file(str(latest_checkpoint(tmp_path / variant) / "model.safetensors"))
    shared = [k for k in weights["mea"] if k.startswith(("encoder.", "classifier."))]
    assert shared and all(torch.equal(weights["full"][k], weights["mea"][k]) for k in shared)
    edrl_keys = {name: [k for k in tensors if k.startswith(("inter.", "intra."))] for name, tensors in weights.items()}
    assert edrl_keys["full"] and not edrl_keys["mea"]


def test_bf16_autocast_runs_close_to_float32():
    model = aligned(seeded()).eval()
    x = features(4, 48, seed=12).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x)
    assert logits.dtype == torch.float32
    assert_close(logits, expected, atol=0.3, rtol=0.1, msg="bf16 aligned logits")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model.train().training_losses(x, Y4)
    assert all(np.isfinite(v) for v in losses.scalars().values()) and losses.total.dtype == torch.float32


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One short EDRL-MEA run through the CLI (fold 0 of 6 speakers, 6 epochs of 96 frames), evaluated
    within-corpus (clean and in white noise) and on 160 far-field utterances of 4 other speakers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped: set up before the per-test _one_thread fixture runs
    try:
        workspace = tmp_path_factory.mktemp("cli")
        studio, far = workspace / "studio", workspace / "far-field"
        assert main(["synth", str(studio), "--speakers", "6", "--per-class", "8", "--seed", "5", "--quiet"]) == 0
        assert main(["synth", str(far), "--speakers", "4", "--per-class", "10", "--seed", "9", "--condition",
                     "far-field", "--quiet"]) == 0
        run = workspace / "run"
        assert main(["train", "--model", "edrl-mea", "--corpus", "iemocap", "--root", str(studio), "--fold", "0",
                     "--epochs", "6", "--batch-size", "16", "--max-frames", "96", "--precision", "fp32", "--seed", "0",
                     "--out", str(run), "--quiet"]) == 0
        assert main(["evaluate", str(run), "--corpus", "iemocap", "--root", str(studio), "--noise", "white", "--snr",
                     "10", "--quiet"]) == 0
        assert main(["evaluate", str(run), "--corpus", "iemocap", "--root", str(far), "--out",
                     str(run / "eval-far-field"), "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    return run, studio


CHANCE = 1 / NUM_CLASSES
# This schedule over seeds 0-5: validation 0.34-0.69, test 0.41-0.63, far-field 0.31-0.43 (mean 0.36;
# 160 utterances, where chance's UAR has a standard deviation of about 0.035). Far-field speech of
# unseen speakers is hard after six epochs for every model here (the demo's Baseline reaches 0.34).
MARGINS = {"validation": 0.05, "test": 0.10, "cross-corpus far-field": 0.05}


def conditions(results_json):
    (run,) = json.loads(results_json.read_text())["runs"]
    return run, {c["condition"]: c for c in run["conditions"]}


def test_short_cli_run_beats_chance_clean_and_cross_corpus(cli_run):
    run, _ = cli_run
    (fold,) = json.loads((run / "run.json").read_text())["folds"]
    alignment = json.loads((run / "folds" / fold / "alignment.json").read_text())
    within, within_conditions = conditions(run / "eval-iemocap" / "results.json")
    cross, cross_conditions = conditions(run / "eval-far-field" / "results.json")
    assert within["model"] == "edrl-mea" and not within["cross_corpus"] and cross["cross_corpus"]
    assert list(within_conditions) == ["clean", "white@10dB"] and list(cross_conditions) == ["clean"]
    scores = {"validation": alignment["aligned_val_uar"], "test": within_conditions["clean"]["uar"],
              "cross-corpus far-field": cross_conditions["clean"]["uar"]}
    assert all(scores[part] > CHANCE + margin for part, margin in MARGINS.items()), scores
    assert (run / "eval-iemocap" / "uar_vs_snr.png").is_file() and (run / "eval-far-field" / "report.md").is_file()


def test_the_fold_model_reloads_to_the_aligned_model_that_was_validated(cli_run):
    run, studio = cli_run
    (fold,) = json.loads((run / "run.json").read_text())["folds"]
    model, config, classes = load_model(run / "folds" / fold)
    assert model.is_aligned and model.mbpls.n_blocks == NUM_CLASSES + 1 and config.variant == "full"
    corpus = load_corpus("iemocap", studio)
    validation = set(json.loads((run / "folds" / fold / "fold.json").read_text())["validation"])
    table = extract_features([u for u in corpus if str(u.path) in validation], classes)
    x, frames = table.batch(list(range(len(table))), config.max_frames)
    with torch.no_grad():
        predictions = model(x.contiguous(memory_format=torch.channels_last), frames).argmax(1)
    recall = [float((predictions[table.labels == c] == c).float().mean()) for c in range(NUM_CLASSES)]
    alignment = json.loads((run / "folds" / fold / "alignment.json").read_text())
    assert sum(recall) / NUM_CLASSES == pytest.approx(alignment["aligned_val_uar"], abs=1e-12)

@pytest.mark.parametrize("build, error, match", [
    pytest.param(lambda: EDRLMEA(variant="tiny"), ValueError, r"variant must be one of \('full', 'edrl', 'mea'\)",
                 id="variant"),
    pytest.param(lambda: EDRLMEA(n_components=0), ValueError, r"n_components must be an int in 1\.\.320", id="k-zero"),
    pytest.param(lambda: EDRLMEA(variant="mea", n_components=300), ValueError, r"in 1\.\.256 .* variant 'mea'",
                 id="k-too-big"),
    pytest.param(lambda: EDRLMEA(n_components=2.5), ValueError, r"n_components must be an int", id="k-float"),
    pytest.param(lambda: EDRLMEA(num_classes=1), ValueError, r"num_classes must be an integer >= 2", id="classes"),
    pytest.param(lambda: TrainConfig(model="edrl-mea", variant="x"), ValueError, r"variant 'x': expected one of",
                 id="config-variant"),
    pytest.param(lambda: TrainConfig(model="edrl-mea", n_components=0), ValueError,
                 r"n_components must be a positive int", id="config-components"),
])
def test_bad_settings_are_explained(build, error, match):
    with pytest.raises(error, match=match):
        build()


@pytest.fixture(scope="module")
def small_model():
    return seeded().eval()


@pytest.mark.parametrize("call, error, match", [
    pytest.param(lambda m: m.training_losses(X4, Y4.float()), TypeError, r"labels must be an integer tensor",
                 id="float-labels"),
    pytest.param(lambda m: m.training_losses(X4, torch.tensor([0, 1, 2, 4])), ValueError,
                 r"labels must be class indices in 0\.\.3", id="label-out-of-range"),
    pytest.param(lambda m: m.training_losses(X4[:, 0], Y4), ValueError, r"x must be 4-D \[B, 3, T, 80\]", id="3d-x"),
    pytest.param(lambda m: m(X4, [32, 0, 5, 5]), ValueError, r"lengths\[1\] is 0; expected 1\.\.T", id="lengths"),
    pytest.param(lambda m: m.fit_alignment([]), ValueError, r"batches is empty", id="no-batches"),
    pytest.param(lambda m: m.fit_alignment([(X4, Y4)]), TypeError,
                 r"batches\[0\] must be a tuple \(x, labels, lengths\)", id="pair-not-triple"),
    pytest.param(lambda m: m.fit_alignment([(X4, Y4[:3], None)]), ValueError,
                 r"batches\[0\] labels must have shape \[B\] = \[4\]", id="labels-shape"),
    pytest.param(lambda m: m.fit_alignment([(X4[:, :, :8], Y4, None)]), ValueError,
                 r"batches\[0\] x has T = 8 frames", id="short-x"),
    pytest.param(lambda m: m.fit_alignment([(X4, Y4, None)]), ValueError,
                 r"n_components=16 exceeds min\(N - 1, sum of block widths\) = min\(3, 320\)", id="too-few-utterances"),
    pytest.param(lambda m: m.aligned_embedding(X4), RuntimeError, r"needs a fitted alignment", id="not-aligned"),
    pytest.param(lambda m: m.load_saved(m.state_dict(), "mbpls"), TypeError, r"config must be the mapping",
                 id="config-type"),
])
def test_bad_input_is_explained(small_model, call, error, match):
    model = copy.deepcopy(small_model)
    with pytest.raises(error, match=match):
        call(model)


def test_a_failed_refit_leaves_the_previous_alignment_whole():
    model = aligned(seeded(n_components=5)).eval()
    x = features(3, 32, seed=13)
    with torch.no_grad():
        before = model(x)
        with pytest.raises(ValueError, match=r"n_components=5 exceeds"):
            model.fit_alignment([(X4, Y4, None)])
        assert model.is_aligned and torch.equal(model(x), before)


def test_an_aligned_model_saved_without_its_mbpls_is_refused():
    tensors, _ = aligned(seeded(n_components=3)).to_saved()
    state = {k: v for k, v in tensors.items() if not k.startswith("mea.mbpls.")}
    with pytest.raises(ValueError, match=r"is aligned but its MB-PLS is missing"):
        seeded(n_components=3).load_saved(state, None)
    with pytest.raises(ValueError, match=r"MB-PLS tensors .* but config has no MB-PLS config"):
        seeded(n_components=3).load_saved(tensors, {"mbpls": None})


def test_cli_passes_the_variant_and_components_on(tiny_corpus, tmp_path):
    corpus, _ = tiny_corpus
    run = tmp_path / "run"
    assert main(["train", "--model", "edrl-mea", "--variant", "mea", "--components", "4", "--corpus", "iemocap",
                 "--root", str(corpus.root), "--fold", "0", "--epochs", "1", "--batch-size", "8", "--max-frames", "32",
                 "--precision", "fp32", "--out", str(run), "--quiet"]) == 0
    (fold,) = json.loads((run / "run.json").read_text())["folds"]
    model, config, _ = load_model(run / "folds" / fold)
    assert (config.variant, config.n_components) == ("mea", 4)
    assert model.is_aligned and model.mbpls.n_blocks == 1 and model.mbpls.n_components == 4


@pytest.mark.parametrize(("model", "option"), [("dsnet", ["--variant", "edrl"]), ("baseline", ["--components", "4"]),
                                              ("edrl-mea", ["--calibration", "softmax"]),
                                              ("baseline", ["--projector-relu"]), ("merit", ["--variant", "edrl"])],
                         ids=["variant-for-dsnet", "components-for-baseline", "calibration-for-edrl-mea",
                              "projector-relu-for-baseline", "variant-for-merit"])
def test_cli_refuses_another_models_options(tmp_path, capsys, model, option):
    assert main(["train", "--model", model, *option, "--corpus", "iemocap", "--root", str(tmp_path),
                 "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert f"{option[0]}: not an option of --model {model}" in capsys.readouterr().err
