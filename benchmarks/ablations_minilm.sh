#!/usr/bin/env bash
# The paper's two ablations on MiniLM (issue 5), each against DefinitionEMB trained the same way:
#   main      mimicking objective, GCIDE definitions (+ numbers)
#   lm        `--objective lm` (w/o mimicking: cross-entropy over the vocabulary through the frozen rows)
#   examples  GCIDE usage examples instead of definitions (`--source gcide-examples`, no number definitions)
# 200 training steps each (bf16 autocast), then embed, replace with the α chosen by results_minilm.sh
# (`--numbers`), fine-tune on MRPC.
#
#   HF_HUB_OFFLINE=1 bash benchmarks/ablations_minilm.sh [OUT] [RESULTS]
set -euo pipefail
A=${1:-runs/ablations}
R=${2:-runs/results}
export HF_HUB_OFFLINE=1
D=.venv/bin/defemb
mkdir -p "$A"
[ -d "$A/corpus-definitions" ] || $D corpus build --tokenizer minilm --source gcide --out "$A/corpus-definitions"
[ -d "$A/corpus-examples" ] || $D corpus build --tokenizer minilm --source gcide-examples --no-numbers \
  --out "$A/corpus-examples"
for name in main lm examples; do
  corpus="$A/corpus-definitions"; objective=mimic
  [ $name = lm ] && objective=lm
  [ $name = examples ] && corpus="$A/corpus-examples"
  if [ ! -f "$A/train-$name/summary.json" ]; then
    if [ -d "$A/train-$name" ]; then $D train --resume "$A/train-$name"; else
      $D train minilm --corpus "$corpus" --objective $objective --steps 200 --eval-every 50 --save-every 50 --bf16 \
        --out "$A/train-$name"; fi
  fi
  [ -f "$A/emb-$name.safetensors" ] || $D embed "$A/train-$name" --corpus "$corpus" --out "$A/emb-$name.safetensors"
done
if [ -f "$R/tune-alpha/choice.json" ]; then
  alpha=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['alpha'])" "$R/tune-alpha/choice.json")
  for name in main lm examples; do
    [ -d "$A/model-$name" ] || $D replace minilm --embeddings "$A/emb-$name.safetensors" --alpha "$alpha" --numbers \
      --task-data ../shared/data/glue-mrpc/train.tsv --out "$A/model-$name"
  done
  OMP_NUM_THREADS=1 $D evaluate classification --task mrpc --models defemb-200=$A/model-main \
    "no-mimicking=$A/model-lm" "examples=$A/model-examples" --seeds 0 --bf16 --out "$A/mrpc"
fi
