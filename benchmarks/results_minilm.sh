#!/usr/bin/env bash
# The first real results (issue 5): original vs DelDirection vs Del-zscore vs DefinitionEMB on MiniLM.
#
#   HF_HUB_OFFLINE=1 bash benchmarks/results_minilm.sh [EMBEDDINGS] [OUT]
#
# EMBEDDINGS: definition rows from `defemb embed` (default runs/emb-1200-v2.safetensors, made by the
# commands in docs/results.md). Every step resumes: rerun the script after an interruption. Two queues
# run side by side, one thread each (faster than two threads per process on a shared 2-core box);
# fine-tuning uses bfloat16 autocast (--bf16: ~1.8x faster on this machine's AMX cores, same losses).
set -euo pipefail
EMB=${1:-runs/emb-1200-v2.safetensors}
R=${2:-runs/results}
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
D=.venv/bin/defemb
mkdir -p "$R"

[ -d "$R/deldirection" ] || $D baseline deldirection minilm --out "$R/deldirection"
[ -d "$R/zscore" ] || $D baseline zscore minilm --out "$R/zscore"
BASE=(original=minilm deldirection="$R/deldirection" zscore="$R/zscore")

queue_a() {
  # α on MRPC dev (App. A.5: the final fine-tuning recipe, 1 seed per setting, test never read)
  $D tune-alpha minilm --embeddings "$EMB" --task mrpc --grid 1,5,20,100 --numbers --bf16 --seeds 1 \
    --out "$R/tune-alpha"
  alpha=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['alpha'])" "$R/tune-alpha/choice.json")
  [ -d "$R/defemb" ] || $D replace minilm --embeddings "$EMB" --alpha "$alpha" --numbers \
    --task-data ../shared/data/glue-mrpc/train.tsv --out "$R/defemb"
  $D evaluate classification --task mrpc --models defemb="$R/defemb" --seeds 0,1,2 --bf16 --save-models \
    --out "$R/mrpc-defemb"
  $D evaluate classification --task rte --models "${BASE[0]}" defemb="$R/defemb" --seeds 0 --bf16 --out "$R/rte-a"
}

queue_b() {
  $D evaluate classification --task mrpc --models "${BASE[@]}" --seeds 0,1,2 --bf16 --save-models --out "$R/mrpc"
  $D evaluate classification --task rte --models "${BASE[1]}" "${BASE[2]}" --seeds 0 --bf16 --out "$R/rte-b"
}

queue_a > "$R/queue-a.log" 2>&1 &
queue_b > "$R/queue-b.log" 2>&1 &
wait

ALL=("${BASE[@]}" defemb="$R/defemb")
$D evaluate probe --models "${ALL[@]}" --seeds 3 --out "$R/probe"
$D evaluate wordsim --models "${ALL[@]}" --out "$R/wordsim"
[ -d "$R/drift" ] || { $D evaluate drift --results "$R/mrpc" --out "$R/drift-base" && \
  $D evaluate drift --results "$R/mrpc-defemb" --out "$R/drift"; }
for m in deldirection zscore defemb; do
  [ -d "$R/$m-analysis" ] || $D analyze "$R/$m" --ranking wordfreq --out "$R/$m-analysis" > /dev/null
done
[ -d "$R/original-analysis" ] || $D analyze minilm --ranking wordfreq --out "$R/original-analysis" > /dev/null
$D compare "$R/original-analysis" "$R/deldirection-analysis" "$R/zscore-analysis" "$R/defemb-analysis" > "$R/geometry.md"
$D results "$R/mrpc" "$R/mrpc-defemb" "$R/rte-a" "$R/rte-b" "$R/probe" "$R/wordsim" "$R/drift-base" "$R/drift" \
  --order original,deldirection,zscore,defemb --out "$R/tables" --force
