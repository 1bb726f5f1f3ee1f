"""Corpus build speed and memory: full GCIDE + numbers for MiniLM, and memory as the input grows.

    python benchmarks/bench_corpus.py [--quick]

Each measurement runs `defemb corpus build` in a fresh subprocess that reports its own peak RSS
(``ru_maxrss``), so figures include the Python interpreter, imports and the tokenizer.
The growth rows replicate the real kaikki Wiktionary sample 1x, 10x, 100x and 1000x (entries renamed so
that each copy is a distinct headword) and build only from it: a streaming build keeps peak memory
flat while the input grows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
WIKTIONARY = SHARED / "wiktionary-kaikki" / "en-en-extract.jsonl"


_CHILD = (
    "import json, resource, sys\n"
    "from defemb.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print(json.dumps({'code': code, 'maxrss_kib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))\n"
)


def run_build(args: list[str], out: Path) -> dict:
    """One build in a fresh child process: wall seconds, that child's own peak RSS (MiB), records."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, "corpus", "build", "--tokenizer", "minilm", *args, "--out", str(out)],
        check=True, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    seconds = time.perf_counter() - started
    child = json.loads(done.stdout.strip().splitlines()[-1])
    if child["code"] != 0:
        raise SystemExit(f"build failed: {done.stderr[-2000:]}")
    stats = json.loads((out / "stats.json").read_text())
    return {"seconds": seconds, "peak_mib": child["maxrss_kib"] / 1024, "records": sum(stats["records"].values())}


def replicated(copies: int, folder: Path) -> Path:
    """The Wiktionary sample repeated ``copies`` times, each copy's headwords suffixed to stay distinct."""
    lines = WIKTIONARY.read_text(encoding="utf-8").splitlines()
    path = folder / f"wiktionary-x{copies}.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for copy in range(copies):
            for line in lines:
                entry = json.loads(line)
                entry["word"] = f"{entry['word']}{copy}" if copy else entry["word"]
                handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the growth rows at 1x and 10x")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for copies in (1, 10) if args.quick else (1, 10, 100, 1000):
            source = replicated(copies, folder)
            size_mib = source.stat().st_size / 2**20
            result = run_build(["--source", f"wiktionary:{source}", "--no-numbers"], folder / f"w{copies}")
            rows.append((f"Wiktionary sample x{copies} ({size_mib:.1f} MiB)", result))
        if not args.quick:
            rows.append(("GCIDE + numbers (full)", run_build(["--source", "gcide"], folder / "gcide")))
    print("| input | records | wall s | records/s | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for name, r in rows:
        rate = r["records"] / r["seconds"]
        print(f"| {name} | {r['records']} | {r['seconds']:.1f} | {rate:.0f} | {r['peak_mib']:.0f} |")


if __name__ == "__main__":
    main()
