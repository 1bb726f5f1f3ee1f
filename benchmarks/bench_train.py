"""Training throughput: defemb's trainer beside a plain loop on the same model and corpus, same run.

    HF_HUB_OFFLINE=1 python benchmarks/bench_train.py --corpus runs/corpus-minilm [--model minilm] [--steps 20]

The plain loop is what a first implementation does: random batches of a fixed number of prompts padded
to the batch maximum, AdamW over every parameter including the embedding table. defemb's trainer:
frozen tables (no gradient, no optimiser state), length-bucketed batches within a token budget.
Printed per loop: examples/s, useful (non-padding) tokens/s, and model-FLOPs utilisation
MFU = 6 × non-embedding parameters × useful tokens/s ÷ a matmul peak measured in the same run (float32,
and for the ``--bf16`` row also bfloat16's own peak).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from defemb.config import TrainConfig
from defemb.method.train import Trainer


def matmul_peak(size: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Best GEMM rate (FLOP/s) of torch on these cores in ``dtype``."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = max(best, 2 * size**3 / (time.perf_counter() - started))
    return best


def non_embedding_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for m in model.modules() if not isinstance(m, torch.nn.Embedding)
               for p in m.parameters(recurse=False))


def timed(step, steps: int) -> tuple[float, int, int]:
    """Seconds, examples and useful tokens over ``steps`` calls of ``step`` (after one warm-up call)."""
    step()
    started, examples, tokens = time.perf_counter(), 0, 0
    for _ in range(steps):
        n, t = step()
        examples, tokens = examples + n, tokens + t
    return time.perf_counter() - started, examples, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64, help="prompts per batch of the plain loop")
    parser.add_argument("--tokens", type=int, default=4096, help="token budget per batch of the trainer")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    peaks = {"fp32": matmul_peak(), "bf16": matmul_peak(dtype=torch.bfloat16)}
    rows = []
    with tempfile.TemporaryDirectory() as run:
        config = TrainConfig(model=args.model, corpus=args.corpus, steps=10**6, tokens=args.tokens, warm_start=False)
        trainer = Trainer(config, run)
        params = non_embedding_parameters(trainer.model.body) + trainer.model.head.weight.numel()
        from defemb.method.data import batch_plan

        plan = batch_plan(trainer.lengths, config.tokens, config.seed, 0)

        def ours():
            batch_ids = plan[trainer.position]
            records = [trainer.train_records[i] for i in batch_ids]
            tokens = sum(len(r["input_ids"]) for r in records)
            trainer._update(trainer.model, plan)
            return len(records), tokens

        rows.append(("defemb trainer (frozen tables, buckets)", "fp32", *timed(ours, args.steps)))
        trainer.config.bf16 = True
        rows.append(("defemb trainer, --bf16 autocast", "bf16", *timed(ours, args.steps)))
        trainer.config.bf16 = False

        # The plain loop, on the same trainer's model and masking, but every parameter trained.
        for p in trainer.model.parameters():
            p.requires_grad_(True)
        optimizer = torch.optim.AdamW(trainer.model.parameters(), lr=1e-4)
        rng = np.random.default_rng(0)
        generator = torch.Generator().manual_seed(0)

        def plain():
            picks = rng.choice(len(trainer.train_records), size=args.batch, replace=False)
            records = [trainer.train_records[i] for i in picks]
            batch = trainer._examples(records, generator)
            loss, _ = trainer._loss(trainer.model(batch), batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            return len(records), int(batch.attention_mask.sum())

        rows.append(("plain loop (random batches, all parameters)", "fp32", *timed(plain, args.steps)))
    print(f"matmul peak: float32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bfloat16 {peaks['bf16'] / 1e9:.0f} GFLOP/s; "
          f"non-embedding parameters: {params / 1e6:.1f} M")
    print("| loop | examples/s | useful tokens/s | MFU (fp32 peak) | MFU (own dtype's peak) | × plain (tokens/s) |")
    print("|---|---|---|---|---|---|")
    plain_rate = rows[-1][4] / rows[-1][2]
    for name, dtype, seconds, examples, tokens in rows:
        rate = tokens / seconds
        print(f"| {name} | {examples / seconds:.1f} | {rate:.0f} | {6 * params * rate / peaks['fp32']:.0%} | "
              f"{6 * params * rate / peaks[dtype]:.0%} | {rate / plain_rate:.2f} |")


if __name__ == "__main__":
    main()
