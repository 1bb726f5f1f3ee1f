#!/usr/bin/env bash
# Issue 9, tenth part: train with `--contrast BETA` on the quickstart's corpus and measure the rebuilt table.
#
#   HF_HUB_OFFLINE=1 bash benchmarks/contrast_minilm.sh OUT BETA [CORPUS]
#
# CORPUS (default runs/repair2/run/corpus, written by `bash benchmarks/repair_minilm.sh runs/repair2`).
# Steps: the quickstart's training (200 steps, band head, bf16 where measured faster), `embed` (mean of up to 5
# prompts), `replace --all --spread directions`, `evaluate wordsim`, then the replacement `defemb run` writes
# (α 20 of the corpus's tokens, --spread directions, numbers within α) in OUT/model and its `analyze` (IsoScore,
# mean cosine, numeric Max Difference) in OUT/analysis. Each step skips what it finished before.
set -euo pipefail
R=$1; B=$2; C=${3:-runs/repair2/run/corpus}
export HF_HUB_OFFLINE=1
D=.venv/bin/defemb
BF16=$(.venv/bin/python -c "from defemb.precision import use_bf16; print('--bf16' if use_bf16() else '')" 2>/dev/null || true)
[ -d "$R/train" ] || $D train minilm --corpus "$C" --steps 200 --warmup 20 --tokens 4096 --eval-every 50 \
  --save-every 50 $BF16 --contrast "$B" --out "$R/train"
[ -f "$R/emb.safetensors" ] || $D embed "$R/train" --corpus "$C" --out "$R/emb.safetensors"
[ -d "$R/all-dir" ] || $D replace minilm --embeddings "$R/emb.safetensors" --all --spread directions --out "$R/all-dir"
[ -d "$R/wordsim" ] || $D evaluate wordsim --models original=minilm contrast="$R/all-dir" --out "$R/wordsim"
[ -d "$R/model" ] || $D replace minilm --embeddings "$R/emb.safetensors" --task-data "$C/train.jsonl" --alpha 20 \
  --spread directions --out "$R/model"
[ -d "$R/analysis" ] || $D analyze "$R/model" --out "$R/analysis"
