"""`defemb run`: analyze -> corpus -> train -> embed -> replace -> analyze again, on one model; then the
same run adds words the vocabulary splits as new tokens (`defemb.extension_report`).

Every stage writes its own output under ``OUT/`` and is skipped when that output is already complete,
so an interrupted pipeline is continued by running the same command again (training resumes from its
checkpoint). The last step prints and writes ``OUT/before_after.md`` and ``OUT/report.html``: the repair
(replaced rows, before | after), then the extension (``OUT/extended``, its new words scored four ways).
Rows are replaced by the paper's rule (numbers only where α picks them); the numeric Max Difference of
rebuilding every number as one set is measured beside it (``OUT/numbers_all.json``, no checkpoint written).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from defemb.analysis.analyze import analyze, write_analysis
from defemb.analysis.before_after import repair_page
from defemb.analysis.numbers import max_difference, numeric_tokens
from defemb.analysis.report import comparison_rows, load_summary, markdown_table, neighbour_rows
from defemb.config import AnalyzeConfig, CorpusConfig, TrainConfig
from defemb.corpus.build import build_corpus
from defemb.errors import DefembError
from defemb.extension_report import SKIPPED, extension_sections, run_extension, score_extension, similarity_sets
from defemb.method.embed import embed
from defemb.method.train import interrupted, resume, train
from defemb.models import load_tokenizer
from defemb.outputs import write_json_atomic, write_text_atomic
from defemb.precision import bf16_speedup, use_bf16
from defemb.replace import ReplaceConfig, replace, replaced_table


@dataclass(frozen=True)
class PipelinePreset:
    steps: int
    warmup: int  # then cosine decay to 0 at the last step
    tokens: int
    eval_every: int
    alpha: float  # the rarest alpha % of the vocabulary that the corpus covers are replaced


PIPELINE_PRESETS = {
    "quickstart": PipelinePreset(steps=200, warmup=20, tokens=4096, eval_every=50, alpha=20.0),
    "full": PipelinePreset(steps=5000, warmup=250, tokens=4096, eval_every=250, alpha=20.0),
}
SHOWN_TOKENS = ("102", "1999", "sediment", "##iment")
NUMBERS_ALL = "numbers_all.json"


def _stage(name: str, done: bool) -> bool:
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {'already done, skipped' if done else 'running'}", flush=True)
    return not done


def run_pipeline(out: str | Path, preset: str = "quickstart", model: str = "minilm", source: str = "gcide",
                 ranking: str | None = None, seed: int = 0) -> str:
    """Run (or continue) every stage; returns the before/after Markdown."""
    if preset not in PIPELINE_PRESETS:
        raise DefembError(f"unknown --preset '{preset}'; choose one of {', '.join(PIPELINE_PRESETS)}")
    try:
        return _run_stages(Path(out), PIPELINE_PRESETS[preset], model, source, ranking, seed)
    except KeyboardInterrupt as exc:
        # A stage's own note names its own flags (--resume); here rerunning the same command continues.
        exc.__notes__ = [f"finished stages are kept in '{out}'; rerun the same `defemb run` command to continue"]
        raise


def _run_stages(out: Path, settings: PipelinePreset, model: str, source: str, ranking: str | None,
                seed: int) -> str:
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("before", "corpus", "train", "after", "model", "extended",
                                           "wordsim_added")}
    emb = out / "definitions.safetensors"

    vocab = load_tokenizer(model).get_vocab()
    shown = [t for t in SHOWN_TOKENS if t in vocab]

    def analysis(model_name: str):
        return analyze(AnalyzeConfig(model=model_name, ranking=ranking, tokens=shown, sample=5, seed=seed))

    if _stage("analyze (before)", (paths["before"] / "analysis.json").exists()):
        write_analysis(analysis(model), paths["before"])
    if _stage("corpus", (paths["corpus"] / "stats.json").exists()):
        build_corpus(CorpusConfig(tokenizer=model, sources=[source]), paths["corpus"], force=False,
                     resume=(out / "corpus.partial").exists())
    if _stage("train", (paths["train"] / "head.safetensors").exists()):
        if interrupted(paths["train"]):
            resume(paths["train"])
        else:
            bf16 = use_bf16()
            print(f"  bf16 autocast {'on' if bf16 else 'off'}: measured {bf16_speedup():.2f}x the float32 speed here",
                  flush=True)
            config = TrainConfig(model=model, corpus=str(paths["corpus"]), steps=settings.steps,
                                 warmup=settings.warmup, tokens=settings.tokens, eval_every=settings.eval_every,
                                 save_every=settings.eval_every, bf16=bf16, seed=seed)
            train(config, paths["train"])
    if _stage("embed", emb.exists()):
        embed(paths["train"], paths["corpus"], emb)
    config = replace_config(model, emb, paths["corpus"], settings.alpha, ranking)
    if _stage("replace", (paths["model"] / "replaced.tsv").exists()):
        replace(config, paths["model"])
    if _stage("replace --numbers all (measured, not written)", (out / NUMBERS_ALL).exists()):
        write_json_atomic(out / NUMBERS_ALL, numbers_all(config))
    if _stage("analyze (after)", (paths["after"] / "analysis.json").exists()):
        write_analysis(analysis(str(paths["model"])), paths["after"])
    sets = similarity_sets()
    if _stage("extend (words the vocabulary splits)", (paths["extended"] / "added.tsv").exists()
              or (out / SKIPPED).exists()):
        run_extension(out, model, paths["train"], source, sets)
    if sets is not None and (paths["extended"] / "added.tsv").exists() and _stage(
            "word similarity of the new tokens", (paths["wordsim_added"] / "definitionemb").exists()):
        score_extension(paths["extended"], sets, paths["wordsim_added"])
    sections = extension_sections(out)
    report = before_after(paths["before"], paths["after"], paths["train"], sections)
    write_text_atomic(out / "before_after.md", report)
    if _stage("report (before | after)", (out / "report.html").exists()):
        summaries = {name: load_summary(paths[name]) for name in ("before", "after")}
        page = repair_page(model, str(paths["model"]), paths["model"] / "replaced.tsv", summaries, ranking=ranking,
                           chosen=shown, notes=[validation_line(paths["train"])], sections=sections)
        write_text_atomic(out / "report.html", page)
    return report


def replace_config(model: str, emb: Path, corpus: Path, alpha: float, ranking: str | None) -> ReplaceConfig:
    """V_task = the corpus's own tokens; the rarest alpha % of the vocabulary that have a row are replaced,
    numbers among them as the paper's rule picks them (all numbers as one set is reported beside it), each
    band's spread restored along its own directions (``--spread directions``: the calibration that measured
    best, docs/results.md; the paper writes the shrunken rows as they are)."""
    return ReplaceConfig(model=model, embeddings=str(emb), task_data=[str(corpus / "train.jsonl")], alpha=alpha,
                         ranking=ranking, spread="directions")


def numbers_all(config: ReplaceConfig) -> dict:
    """Numeric Max Difference of the table `replace --numbers all` would write (every number rebuilt)."""
    variant = ReplaceConfig(**{**config.to_dict(), "numbers": "all"})
    table, result = replaced_table(variant)
    ids, values = numeric_tokens(result.tokens, result.ranking.order)
    return {"replaced": len(result.ids), "numeric_max_difference": max_difference(table[ids], values)}


def numbers_all_line(path: Path) -> str:
    variant = json.loads(path.read_text())
    numeric = variant["numeric_max_difference"]
    return (f"Every number rebuilt as one set (`replace --numbers all`, {variant['replaced']} rows; not written): "
            f"numeric Max Difference mean {numeric['mean']:.2f} / median {numeric['median']:g}.")


def validation_line(run: Path) -> str:
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    start = next(m for m in metrics if m.get("event") == "start")
    summary = json.loads((run / "summary.json").read_text())
    kept = f"the weights of step {summary['best_step']} kept" if summary.get("best_step") else "the last weights kept"
    return (f"Validation ‖e−ẽ‖²: mean-row predictor {start['mean_row_mse']:.4f}, trained model "
            f"{summary['best_valid_mse']:.4f} at best, after {summary['steps']} steps ({kept}).")


def before_after(before: Path, after: Path, run: Path, sections: list = ()) -> str:
    """The Markdown report: the repair's band table and neighbours, then the extension's ``sections``."""
    summaries = {"before": load_summary(before), "after": load_summary(after)}
    header, rows = comparison_rows(summaries)
    parts = ["# DefinitionEMB before / after", "", "## Repair: rare rows replaced", "", markdown_table(header, rows),
             "", validation_line(run), ""]
    if (after.parent / NUMBERS_ALL).exists():
        parts += [numbers_all_line(after.parent / NUMBERS_ALL), ""]
    for name, summary in summaries.items():
        columns = ["token", "band", "chosen/sampled", "neighbours"]
        parts += [f"## Neighbours {name}", "", markdown_table(columns, neighbour_rows(summary["neighbours"])), ""]
    for title, text, header, rows in sections:
        parts += [f"## {title}", "", *([text, ""] if text else [])]
        parts += [markdown_table(header, rows), ""] if rows else []
    parts += [f"Interactive report, before | after: {after.parent / 'report.html'}", ""]
    return "\n".join(parts)
