"""Would a frequency-aware linear head predict the rare band better? Ridge maps on the frozen model's states.

    HF_HUB_OFFLINE=1 python benchmarks/quality_band_ridge.py --model smollm2 --corpus runs/run-smollm2/corpus \
        [--fit 2048] [--valid 300] [--bf16]

The states are those `train`'s warm start fits W on (training prompts, the family's masking, the frozen
body) and those `train` validates on (validation prompts, encoders fully masked). Printed: masked
‖e−ẽ‖² per band of the target token for
- the table's mean row, and each band's own mean row;
- one ridge map over every band (today's warm start);
- one map fitted on deviations from each band's mean row, that mean added back (a band intercept);
- one map per band;
- one map per band shrunk toward the shared map (the shared map plus a per-band ridge correction: a band
  with few rows stays near the shared map).
The band of a token is known when its row is predicted (it is the token being embedded), so any of
these is a head `embed` could use. Every map is fitted by the warm start's own `ridge_fit` and `band_ridge_fit`.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch

from defemb.config import TrainConfig
from defemb.frequency import BANDS
from defemb.method.train import Trainer, band_ridge_fit, ridge_fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--fit", type=int, default=2048, help="training prompts the maps are fitted on")
    parser.add_argument("--valid", type=int, default=2000, help="validation prompts scored")
    parser.add_argument("--bf16", action="store_true", help="states under bfloat16 autocast, as `train --bf16`")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as run:
        config = TrainConfig(model=args.model, corpus=args.corpus, max_valid=args.valid, bf16=args.bf16,
                             seed=args.seed)
        trainer = Trainer(config, run)
        rng = np.random.default_rng(args.seed + 104729)
        picks = rng.choice(len(trainer.train_records), size=min(args.fit, len(trainer.train_records)), replace=False)
        trainer.model.eval()
        H, fit_ids = trainer.masked_states([trainer.train_records[i] for i in picks], args.seed + 104729)
        V, valid_ids = trainer.masked_states(trainer.valid_records, args.seed + 7919)
    table = trainer.targets.double()  # (V, h_e)
    bands = trainer.token_bands  # band name per token id
    names = sorted(set(bands.tolist()))  # the three bands, and 'special' for ids outside the ranking
    band_mean = {b: table[torch.from_numpy(np.flatnonzero(bands == b))].mean(0) for b in names}
    fit_bands, valid_bands = bands[fit_ids.numpy()], bands[valid_ids.numpy()]
    T, target = table[fit_ids], table[valid_ids]

    def of_band(band_names: np.ndarray) -> torch.Tensor:  # (n, h_e): each row's band mean
        return torch.stack([band_mean[b] for b in band_names])

    W = ridge_fit(H, T)
    W_dev = ridge_fit(H, T - of_band(fit_bands))
    _, corrections = band_ridge_fit(H, T, torch.from_numpy(np.searchsorted(names, fit_bands)), len(names))
    per_band, shrunk = torch.zeros_like(target), V @ W
    for k, b in enumerate(names):
        at, fit_at = torch.from_numpy(valid_bands == b), torch.from_numpy(fit_bands == b)
        if at.any() and fit_at.any():
            per_band[at] = V[at] @ ridge_fit(H[fit_at], T[fit_at])
            shrunk[at] = V[at] @ (W + corrections[k])  # the band head's warm start
    predictors = {
        "mean row": table.mean(0).expand_as(target),
        "band's mean row": of_band(valid_bands),
        "one ridge map (warm start today)": V @ W,
        "band mean + one map on deviations": of_band(valid_bands) + V @ W_dev,
        "one map per band": per_band,
        "shared map + per-band correction": shrunk,
    }
    counts = {b: int((fit_bands == b).sum()) for b in BANDS}
    print(f"{args.model}: maps fitted on {len(H)} positions ({', '.join(f'{b} {n}' for b, n in counts.items())}); "
          f"scored on {len(V)} validation positions")
    print("| predictor | all | " + " | ".join(BANDS) + " |")
    print("|---|---|" + "---|" * len(BANDS))
    for name, predicted in predictors.items():
        squared = ((predicted - target) ** 2).sum(1)
        cells = [f"{float(squared.mean()):.4f}"]
        for b in BANDS:
            at = torch.from_numpy(valid_bands == b)
            cells.append(f"{float(squared[at].mean()):.4f}" if at.any() else "–")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
