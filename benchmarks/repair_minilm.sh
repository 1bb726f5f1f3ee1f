#!/usr/bin/env bash
# Issue 9's target table in one script: what the rows `defemb run` replaces by default do to MiniLM.
#
#   HF_HUB_OFFLINE=1 bash benchmarks/repair_minilm.sh [OUT] [PARTS]
#
# OUT (default runs/repair): every step writes its own folder there and resumes, so rerun the script after
# an interruption. PARTS (default "run rte probe wordsim mrpc"): the parts to run, in that order; the
# tables are rebuilt from whatever has finished. Cost on 2 cores (bf16 where measured faster): run ~10 min,
# rte ~25 min, probe ~5 min, wordsim ~3 min, mrpc ~40 min.
#
# Compared: the original table and the checkpoint `defemb run` writes (band head, rows averaged over up to
# 5 prompts, α 20, --spread directions, numbers within α); for word similarity also every covered row
# rebuilt (`replace --all`).
# The geometry figures (IsoScore, mean cosine, Max Difference) are in OUT/run/before_after.md.
set -euo pipefail
R=${1:-runs/repair}
PARTS=${2:-run rte probe wordsim mrpc}
export HF_HUB_OFFLINE=1
D=.venv/bin/defemb
S=../shared/data
mkdir -p "$R"
MODELS=(original=minilm replaced="$R/run/model")

for part in $PARTS; do
  case $part in
    run) $D run --out "$R/run" ;;
    rte) $D evaluate classification --task rte --data "$S/glue-rte" --models "${MODELS[@]}" --seeds 3 --bf16 \
           --out "$R/rte" ;;
    probe) $D evaluate probe --models "${MODELS[@]}" --seeds 3 --out "$R/probe" ;;
    wordsim)
      [ -d "$R/all-dir" ] || $D replace minilm --embeddings "$R/run/definitions.safetensors" --all \
        --spread directions --out "$R/all-dir"
      $D evaluate wordsim --models "${MODELS[@]}" all_directions="$R/all-dir" --out "$R/wordsim" ;;
    mrpc) $D evaluate classification --task mrpc --data "$S/glue-mrpc" --models "${MODELS[@]}" --seeds 3 --bf16 \
            --out "$R/mrpc" ;;
    *) echo "unknown part '$part' (run, rte, probe, wordsim, mrpc)" >&2; exit 2 ;;
  esac
done

done_dirs=()
for d in mrpc rte probe wordsim; do [ -d "$R/$d" ] && done_dirs+=("$R/$d"); done
if [ ${#done_dirs[@]} -gt 0 ]; then  # `run` alone leaves nothing to tabulate (its figures are in before_after.md)
  $D results "${done_dirs[@]}" --order original,replaced,all_directions --out "$R/tables" --force
fi
