"""SSLFeatures: the SSL front-end of Sparse MERIT against Hugging Face's own hidden states, on tiny random models."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from helpers import assert_close, speech_like

transformers = pytest.importorskip("transformers")

from ser_fast.models.merit.ssl import SSLFeatures  # noqa: E402

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": (16,) * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
    "layerdrop": 0.5,
}
# The three CNN/transformer layouts in use: WavLM-Large (layer-norm CNN, pre-LN transformer), wav2vec2-base
# (group-norm CNN, trained without attention masks), and a layer-norm CNN with a post-LN transformer.
TINY_CONFIGS = {
    "wavlm": lambda: transformers.WavLMConfig(**TINY, feat_extract_norm="layer", do_stable_layer_norm=True),
    "wav2vec2": lambda: transformers.Wav2Vec2Config(**TINY, feat_extract_norm="group", do_stable_layer_norm=False),
    "hubert": lambda: transformers.HubertConfig(**TINY, feat_extract_norm="layer", do_stable_layer_norm=False),
}
LAYER_NORM_CNN = ["wavlm", "hubert"]
LENGTHS = (4001, 16000, 7919)


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny models gain nothing from threads, and on a loaded 2-core machine OpenMP spinning makes every
    op ~100× slower with two; conftest restores the count after each test."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    dirs = {}
    for name, make_config in TINY_CONFIGS.items():
        torch.manual_seed(len(name))
        directory = tmp_path_factory.mktemp(name)
        transformers.AutoModel.from_config(make_config()).save_pretrained(directory)
        dirs[name] = directory
    return dirs


def _waveforms(lengths, seed: int = 0) -> torch.Tensor:
    """Speech-like rows in [-1, 1] with non-zero noise past each length, so padding must be handled."""
    samples = max(lengths)
    rows = [torch.from_numpy(speech_like(samples, 16000, seed + i, scale=0.3)) for i in range(len(lengths))]
    batch = torch.stack(rows)
    for i, n in enumerate(lengths):
        batch[i, n:] = 0.5 * torch.randn(samples - n)
    return batch


def _randomize_norms(features: SSLFeatures) -> None:
    """Distinct affine LayerNorms, so that a state meeting the wrong norm (or none) shows."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for norm in features.state_norms:
            norm.weight.copy_(1 + 0.5 * torch.randn(norm.weight.shape, generator=generator))
            norm.bias.copy_(0.5 * torch.randn(norm.bias.shape, generator=generator))


def _hf_states(model, waveform: torch.Tensor) -> list[torch.Tensor]:
    output = model(waveform, output_hidden_states=True)
    return [*output.hidden_states[:-1], output.last_hidden_state]


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_concat_equals_each_hf_hidden_state_through_its_layernorm(model_dirs, name):
    features = SSLFeatures.from_pretrained(model_dirs[name]).eval()
    _randomize_norms(features)
    waveform = _waveforms((7919, 7919))
    with torch.no_grad():
        out, mask = features(waveform)
        states = _hf_states(features.backbone, waveform)
    hidden, layers = TINY["hidden_size"], TINY["num_hidden_layers"]
    assert len(states) == layers + 1 == features.num_states
    assert features.output_dim == (layers + 1) * hidden
    assert out.shape == (2, states[0].shape[1], (layers + 1) * hidden)
    assert not mask.any()
    expected = torch.cat([norm(state) for norm, state in zip(features.state_norms, states)], dim=-1)
    assert_close(out, expected, atol=1e-5, msg=name)


def test_stable_layer_norm_last_state_is_the_normalized_output(model_dirs):
    """Pre-LN models: the last state is last_hidden_state (encoder LayerNorm applied), not the raw last layer."""
    features = SSLFeatures.from_pretrained(model_dirs["wavlm"]).eval()
    final_norm = features.backbone.encoder.layer_norm
    with torch.no_grad():
        final_norm.weight.uniform_(0.5, 2.0)
        final_norm.bias.normal_()
    waveform = _waveforms((4001,))
    with torch.no_grad():
        out, _ = features(waveform)
        output = features.backbone(waveform, output_hidden_states=True)
    last = out[..., -TINY["hidden_size"] :]
    assert_close(last, features.state_norms[-1](output.last_hidden_state), atol=1e-5, msg="last state")
    raw = features.state_norms[-1](output.hidden_states[-1])
    assert (last - raw).abs().max() > 1e-2


@pytest.mark.parametrize("name", LAYER_NORM_CNN)
def test_padded_batch_matches_each_utterance_alone(model_dirs, name):
    features = SSLFeatures.from_pretrained(model_dirs[name]).eval()
    _randomize_norms(features)
    waveform = _waveforms(LENGTHS)
    with torch.no_grad():
        out, mask = features(waveform, torch.tensor(LENGTHS))
        for i, n in enumerate(LENGTHS):
            alone = features.backbone(waveform[i : i + 1, :n]).last_hidden_state.shape[1]
            assert int((~mask[i]).sum()) == alone, f"row {i}: valid frames vs HF's frame count for {n} samples"
            assert not mask[i, :alone].any() and mask[i, alone:].all()
            solo, _ = features(waveform[i : i + 1, :n])
            assert_close(out[i, :alone], solo[0], atol=2e-5, msg=f"{name} row {i}")
            assert not out[i, alone:].any(), "features at padded frames must be zero"


def test_group_norm_model_gets_zeroed_padding_not_an_attention_mask(model_dirs):
    """wav2vec2-base style: HF says pass no attention mask and zero-pad; what lies past a length must not matter."""
    features = SSLFeatures.from_pretrained(model_dirs["wav2vec2"]).eval()
    waveform = _waveforms(LENGTHS)
    zero_padded = waveform.clone()
    for i, n in enumerate(LENGTHS):
        zero_padded[i, n:] = 0
    lengths = torch.tensor(LENGTHS)
    with torch.no_grad():
        out, mask = features(waveform, lengths)
        states = _hf_states(features.backbone, zero_padded)
        solo, _ = features(waveform[1:2])
    expected = torch.cat([norm(state) for norm, state in zip(features.state_norms, states)], dim=-1)
    expected = expected.masked_fill(mask[..., None], 0.0)
    assert_close(out, expected, atol=1e-5, msg="wav2vec2 padded batch")
    assert_close(out[1], solo[0], atol=1e-5, msg="full-length row")
    assert (~mask).sum(1).tolist() == features.frame_lengths(lengths).tolist() == [12, 49, 24]


@pytest.mark.parametrize("name", LAYER_NORM_CNN)
def test_weighted_is_softmax_mix_of_the_normalised_states(model_dirs, name):
    concat = SSLFeatures.from_pretrained(model_dirs[name]).eval()
    _randomize_norms(concat)
    weighted = SSLFeatures(concat.backbone, combine="weighted").eval()
    weighted.state_norms.load_state_dict(concat.state_norms.state_dict())
    with torch.no_grad():
        weighted.state_logits.copy_(torch.tensor([0.3, -1.1, 0.9]))
        waveform = _waveforms((16000, 4001))
        out, mask = weighted(waveform, [16000, 4001])
        stacked, _ = concat(waveform, [16000, 4001])
    hidden = TINY["hidden_size"]
    assert weighted.output_dim == hidden and out.shape == (2, stacked.shape[1], hidden)
    per_state = stacked.unflatten(-1, (weighted.num_states, hidden))
    expected = (per_state * weighted.state_weights()[:, None]).sum(-2)
    assert_close(out, expected, atol=1e-5, msg=name)
    assert_close(weighted.state_weights().sum(), torch.tensor(1.0), atol=1e-6)


def test_frozen_feature_encoder_gets_no_grad_but_transformer_does(model_dirs):
    features = SSLFeatures.from_pretrained(model_dirs["wavlm"], combine="weighted").train()
    out, mask = features(_waveforms((4001, 7919)), [4001, 7919])
    out.sum().backward()
    backbone = features.backbone
    assert all(p.grad is None and not p.requires_grad for p in backbone.feature_extractor.parameters())
    trained = [p for p in backbone.encoder.parameters() if p.grad is not None]
    assert trained and any(p.grad.abs().sum() > 0 for p in trained)
    assert features.state_logits.grad is not None


def test_freeze_gives_no_grad_to_the_ssl_model_but_norms_train(model_dirs):
    features = SSLFeatures.from_pretrained(model_dirs["hubert"], freeze=True).train()
    assert not features.backbone.training, "a frozen SSL model stays in eval mode"
    out, _ = features(_waveforms((7919,)))
    out.pow(2).mean().backward()
    assert all(p.grad is None and not p.requires_grad for p in features.backbone.parameters())
    assert all(norm.weight.grad is not None and norm.weight.grad.abs().sum() > 0 for norm in features.state_norms)


def test_layerdrop_is_switched_off(model_dirs):
    features = SSLFeatures.from_pretrained(model_dirs["wavlm"])
    assert features.backbone.config.layerdrop == 0.0


@pytest.mark.parametrize(("frontend", "min_samples", "frames"), [
    pytest.param("log-mel", 80, [50, 25], id="log-mel"),  # (S + 240) // 320
    pytest.param("waveform", 400, [49, 24], id="waveform"),  # WavLM's CNN
])
def test_default_backbone_properties_and_trainable_front_end(frontend, min_samples, frames):
    features = SSLFeatures.default(frontend=frontend)
    assert features.sample_rate == 16000 and features.frame_rate == 50.0 and features.min_samples == min_samples
    assert features.num_states == 5 and features.output_dim == 5 * 192
    assert features.backbone.config.model_type == "wavlm"
    out, mask = features.train()(_waveforms((16000, 8001)), [16000, 8001])
    assert out.shape == (2, frames[0], 960) and (~mask).sum(1).tolist() == frames
    out.sum().backward()
    assert all(p.grad is not None for p in features.backbone.feature_extractor.parameters())


@pytest.mark.parametrize("lengths", [(16000, 8001, 161), (4001, 7919, 80)], ids=["1s-0.5s-10ms", "odd-min"])
def test_log_mel_default_gives_each_utterance_of_a_padded_batch_its_features_alone(lengths):
    features = SSLFeatures.default(hidden_size=64, num_hidden_layers=2, num_attention_heads=2).eval()
    _randomize_norms(features)
    waveform = _waveforms(lengths)
    with torch.no_grad():
        batch, mask = features(waveform, list(lengths))
        for row, n in enumerate(lengths):
            alone, _ = features(waveform[row:row + 1, :n])
            assert int((~mask[row]).sum()) == alone.shape[1] == (n + 240) // 320
            assert_close(batch[row, : alone.shape[1]], alone[0], atol=2e-5, msg=f"utterance {row} of {n} samples")
            assert bool((batch[row, alone.shape[1]:] == 0).all())


def test_log_mel_front_end_reads_the_kaldi_features_of_the_valid_samples():
    """The front-end's input is DSNet's log-Mel + Δ + ΔΔ (unsnipped frames), normalised per utterance."""
    from ser_fast import deltas, fbank
    from ser_fast.models.merit import log_mel_wavlm

    encoder = SSLFeatures.default().backbone.feature_extractor
    waveform = _waveforms((8001,))
    seen = {}
    encoder.subsample.register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        encoder(waveform)
    feats, _ = fbank(waveform * log_mel_wavlm.INT16_SCALE, snip_edges=False)
    feats = deltas(feats)[0]
    feats = (feats - feats.mean(0)) / torch.sqrt(feats.var(0, unbiased=False) + log_mel_wavlm.NORMALIZE_EPS)
    padding = log_mel_wavlm.SUBSAMPLING_KERNEL - 1
    assert_close(seen["x"][0, :, padding:].T, feats, atol=1e-4, msg="normalised log-Mel + deltas")


def test_unknown_frontend_is_rejected():
    with pytest.raises(ValueError, match="frontend 'mfcc'"):
        SSLFeatures.default(frontend="mfcc")


def test_default_normalizes_each_utterance_over_its_valid_samples():
    features = SSLFeatures.default(hidden_size=64, num_hidden_layers=1, num_attention_heads=2).eval()
    waveform = _waveforms((6401, 11025))
    scaled = waveform * torch.tensor([[1000.0], [0.5]])  # not tiny: the 1e-7 variance floor would show
    with torch.no_grad():
        out, _ = features(waveform, [6401, 11025])
        out_scaled, _ = features(scaled, [6401, 11025])
    assert_close(out_scaled, out, atol=1e-4, msg="scale invariance")


@pytest.mark.parametrize("frontend", ["log-mel", "waveform"])
def test_default_round_trips_through_config_dict(frontend):
    original = SSLFeatures.default(combine="weighted", seed=3, frontend=frontend).eval()
    with torch.no_grad():
        for parameter in original.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    description = json.loads(json.dumps(original.config_dict()))
    rebuilt = SSLFeatures.from_config_dict(description).eval()
    assert rebuilt.combine == "weighted" and rebuilt.freeze_feature_encoder is False
    assert type(rebuilt.backbone) is type(original.backbone)
    waveform = _waveforms((8001, 4567))
    with torch.no_grad():
        expected, expected_mask = original(waveform, [8001, 4567])
        before, _ = rebuilt(waveform, [8001, 4567])
        assert (before - expected).abs().max() > 1e-3, "random init must differ from the perturbed weights"
        rebuilt.load_state_dict(original.state_dict())
        out, mask = rebuilt(waveform, [8001, 4567])
    assert torch.equal(mask, expected_mask)
    assert_close(out, expected, atol=1e-6, msg="after load_state_dict")


def test_pretrained_round_trips_through_config_dict(model_dirs):
    original = SSLFeatures.from_pretrained(model_dirs["hubert"], freeze=True).eval()
    description = json.loads(json.dumps(original.config_dict()))
    assert description["source"] == "pretrained" and "model_config" not in description
    rebuilt = SSLFeatures.from_config_dict(description).eval()
    assert rebuilt.freeze and rebuilt.output_dim == original.output_dim
    waveform = _waveforms((4001,))
    with torch.no_grad():
        assert_close(rebuilt(waveform)[0], original(waveform)[0], atol=0.0, msg="same weights from the directory")


def test_preprocessor_config_sets_waveform_normalisation(model_dirs, tmp_path):
    assert SSLFeatures.from_pretrained(model_dirs["wavlm"]).normalize_waveform is False
    model_dir = model_dirs["wavlm"]
    copy = tmp_path / "with_preprocessor"
    copy.mkdir()
    for file in model_dir.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    (copy / "preprocessor_config.json").write_text(json.dumps({"do_normalize": True, "sampling_rate": 16000}))
    assert SSLFeatures.from_pretrained(copy).normalize_waveform is True
    assert SSLFeatures.from_pretrained(copy, normalize_waveform=False).normalize_waveform is False


def test_missing_directory_says_how_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="huggingface-cli download microsoft/wavlm-large"):
        SSLFeatures.from_pretrained(tmp_path / "wavlm-large")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        SSLFeatures.from_pretrained(tmp_path)


def test_wrong_model_type_is_rejected(tmp_path):
    transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="model_type 'bert' is not supported"):
        SSLFeatures.from_pretrained(tmp_path)


def test_task_head_model_is_rejected(model_dirs):
    head = transformers.WavLMForSequenceClassification(transformers.WavLMConfig(**TINY))
    with pytest.raises(TypeError, match="base model"):
        SSLFeatures(head)


@pytest.mark.parametrize(
    ("waveform", "lengths", "error", "match"),
    [
        pytest.param(torch.zeros(2, 399), None, ValueError, "at least 400", id="too-short-audio"),
        pytest.param(
            torch.zeros(2, 1000), [1000, 399], ValueError, r"lengths\[1\] is 399.*at least 400", id="too-short-length"
        ),
        pytest.param(torch.zeros(2, 1000), [1000, 1001], ValueError, r"1\.\.1000", id="length-past-end"),
        pytest.param(torch.zeros(2, 1000), [1000, 0], ValueError, r"lengths\[1\] is 0", id="zero-length"),
        pytest.param(torch.zeros(2, 1000, dtype=torch.int16), None, TypeError, "floating-point", id="int16-waveform"),
        pytest.param(torch.zeros(1000), None, ValueError, r"2-D \[B, S\]", id="1d-waveform"),
        pytest.param(torch.zeros(2, 1000), torch.tensor([1000.0, 500.0]), TypeError, "integers", id="float-lengths"),
        pytest.param(torch.zeros(2, 1000), [1000], ValueError, r"shape \[B\] = \[2\]", id="lengths-wrong-batch"),
    ],
)
def test_bad_inputs_raise_clear_errors(model_dirs, waveform, lengths, error, match):
    features = SSLFeatures.from_pretrained(model_dirs["wavlm"])
    with pytest.raises(error, match=match):
        features(waveform, lengths)


def test_bad_settings_raise_clear_errors(model_dirs):
    with pytest.raises(ValueError, match="combine must be one of"):
        SSLFeatures.from_pretrained(model_dirs["wavlm"], combine="sum")
    with pytest.raises(ValueError, match="unknown WavLMConfig field"):
        SSLFeatures.default(hidden_sizes=64)
    with pytest.raises(ValueError, match="missing"):
        SSLFeatures.from_config_dict({"source": "config"})


def test_missing_transformers_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r'pip install "ser_fast\[ssl\]"'):
        SSLFeatures.default()
