"""Which map of a band head should read a word the vocabulary lacks? Word similarity of the new words per map.

    HF_HUB_OFFLINE=1 python benchmarks/quality_new_word_band.py --run RUN [--run RUN2 ...] [--source gcide]

For each run (a band-head run is read with its shared W and with each band's map; a run with one W once),
every word of the shared similarity sets that the model splits into pieces and the source defines gets its
predicted row (`extend`'s `extension_from_run`, 5 senses averaged), and the sets are scored as `defemb run`
scores them: mean Spearman ρ on the pairs holding a new word, and over all pairs. Baselines on the same
words are printed once per run (they do not depend on the map).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from defemb.evaluation.wordsim import PRIMARY, PRIMARY_NEW, added_word_scores, read_sets
from defemb.extend import extension_from_run
from defemb.extension_report import MIN_PAIRS, similarity_sets, word_list
from defemb.frequency import BANDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="finished `defemb train` run (repeatable)")
    parser.add_argument("--source", default="gcide")
    args = parser.parse_args()
    sets_dir = similarity_sets()
    if sets_dir is None:
        raise SystemExit("no shared word-similarity sets on this machine")
    sets, words = read_sets([str(sets_dir)]), word_list(sets_dir)
    print("| run | map | new words | ρ new-word pairs | ρ all pairs |")
    print("|---|---|---|---|---|")
    for run in args.run:
        head = json.loads((Path(run) / "config.json").read_text()).get("head", "single")
        for band in ("shared", *BANDS) if head == "band" else ("shared",):
            scores = added_word_scores(extension_from_run(run, words, [args.source], band=band), sets, MIN_PAIRS)
            ours = scores["definitionemb"]
            label = band if head == "band" else "one W"
            print(f"| {run} | {label} | {ours['new/words']} | {ours[PRIMARY_NEW]:.3f} | {ours[PRIMARY]:.3f} |")
        for name in ("resize", "pieces", "desc_init"):
            print(f"| {run} | baseline {name} | {scores[name]['new/words']} | {scores[name][PRIMARY_NEW]:.3f} | "
                  f"{scores[name][PRIMARY]:.3f} |")


if __name__ == "__main__":
    main()
