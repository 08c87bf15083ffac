"""Sparse MERIT training step: ser_fast's sparse top-k design against the authors' released design
(every expert on every frame, masked), at E=3, k=1 and E=8, k=2, in one run.

The step is forward + backward + AdamW of everything after the SSL model (the two routers, the
expert pool, the SER and SE heads, the joint loss), on SSL features of WavLM-Large width (1024,
the weighted sum of layers) for a batch of 8 utterances of 3 s: the paper's first stage, where the
SSL model is frozen and its features are computed once. Experts are the paper's
Linear(1024→4096)+ReLU+Linear(4096→1024).

Usage: python bench/bench_merit.py [--rounds 5] [--markdown BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _report import interleaved_median, machine, replace_section

from ser_fast.models.merit import MeritConfig, MeritHeads, Spectrogram
from ser_fast.models.merit.se_head import se_loss

BATCH, SECONDS, SSL_DIM, HIDDEN, EXPERT_DIM = 8, 3.0, 1024, 4096, 1024
SAMPLE_RATE, SSL_RATE = 16000, 50
CASES = ((3, 1), (8, 2))


def training_step(design: str, experts: int, k: int):
    torch.manual_seed(0)
    config = MeritConfig(design=design, num_experts=experts, top_k=k, expert_hidden=HIDDEN, expert_dim=EXPERT_DIM,
                         ser_hidden=1024)
    heads = MeritHeads(SSL_DIM, config)
    optimizer = torch.optim.AdamW(heads.parameters(), lr=5e-5, fused=True)
    spectrogram = Spectrogram()
    samples = int(SECONDS * SAMPLE_RATE)
    features = torch.randn(BATCH, int(SECONDS * SSL_RATE), SSL_DIM)
    ssl_padding = torch.zeros(features.shape[:2], dtype=torch.bool)
    noisy, clean = torch.randn(BATCH, samples), torch.randn(BATCH, samples)
    noisy_log_mag = spectrogram.log1p_magnitude(spectrogram(noisy))
    clean_log_mag = spectrogram.log1p_magnitude(spectrogram(clean))
    stft_padding = torch.zeros(BATCH, noisy_log_mag.shape[-1], dtype=torch.bool)
    labels = torch.arange(BATCH) % config.num_classes

    def step():
        logits, mask, aux = heads(features, ssl_padding, noisy_log_mag, stft_padding)
        loss = F.cross_entropy(logits, labels) + se_loss(mask * noisy_log_mag, clean_log_mag, stft_padding)
        if heads.experts.uses_balancing_loss:
            loss = loss + config.balance_weight * aux.load_balancing_loss.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    lines = ["| experts E | top-k | released ms / step | sparse ms / step | speed-up |", "|---:|---:|---:|---:|---:|"]
    for experts, k in CASES:
        seconds = interleaved_median({"released": training_step("released", experts, k),
                                      "sparse": training_step("sparse", experts, k)}, args.rounds)
        released, sparse = 1e3 * seconds["released"], 1e3 * seconds["sparse"]
        lines.append(f"| {experts} | {k} | {released:.0f} | {sparse:.0f} | **{released / sparse:.2f}×** |")
        print(lines[-1], flush=True)
    body = (f"Machine: {machine()}. Command: `python bench/bench_merit.py`, {time.strftime('%Y-%m-%d')}. "
            f"Training step (forward + backward + fused AdamW) of routers, experts and both heads on SSL features "
            f"[{BATCH}, {int(SECONDS * SSL_RATE)}, {SSL_DIM}] ({BATCH} × {SECONDS:g} s), experts "
            f"{SSL_DIM}→{HIDDEN}→{EXPERT_DIM}, two routers (SER, SE), median of {args.rounds} rounds taken in "
            "turns.\n\n" + "\n".join(lines) + "\n")
    print(body)
    if args.markdown:
        replace_section(args.markdown, "merit", body)


if __name__ == "__main__":
    main()
