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

import ctypes
import gc
import json
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

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
from defemb.models import config_kind, load_tokenizer
from defemb.outputs import write_json_atomic, write_text_atomic
from defemb.precision import bf16_speedup, cpu_name, use_bf16
from defemb.replace import ReplaceConfig, ids_to_embed, replace, replaced_table


@dataclass(frozen=True)
class PipelinePreset:
    steps: int
    warmup: int  # then cosine decay to 0 at the last step
    tokens: int
    eval_every: int
    alpha: float  # the rarest alpha % of the vocabulary that the corpus covers are replaced
    lr: float | None = None  # None: the `small` training preset's
    max_valid: int = 2000  # validation prompts per evaluation
    ridge_examples: int = 4096  # prompts the warm start fits W on
    embed_replaced_only: bool = False  # embed only the rows replace rebuilds (else every covered token)
    aggregate: str = "mean"  # `embed`: a row as the mean over up to MAX_PROMPTS (10) prompts, or "first"
    gradient_checkpointing: bool = False  # less memory, ~12 % more step time (docs/benchmarks.md)
    contrast: float = 0.0  # `train --contrast`: weight of the term that asks each prediction to pick its own row
    token_weight: float = 0.0  # `train --token-weight`: γ, each position weighs n^-γ (n: its token's positions)


PIPELINE_PRESETS = {
    "quickstart": PipelinePreset(steps=200, warmup=20, tokens=4096, eval_every=50, alpha=20.0),
    "full": PipelinePreset(steps=2000, warmup=100, tokens=4096, eval_every=200, alpha=20.0),
}
# Every preset keeps the paper's loss alone (contrast 0). With `--contrast 0.1` MiniLM's rows are told apart from
# their neighbours half as often again and the rare band's mean cosine target is met, but MRPC ties, and RTE and the
# numeric probe come out slightly below the paper's loss (docs/results.md, "Issue 9, eleventh part").
# Decoder-only models (SmolLM2-135M: 6x MiniLM's parameters, and every row read by its own pass of the model)
# take these instead, so that `quickstart` stays a 20-minute run on 2 cores; docs/results.md has the figures.
DECODER_PRESETS = {
    "quickstart": PipelinePreset(steps=40, warmup=4, tokens=2048, eval_every=20, alpha=5.0, lr=1e-5,
                                 max_valid=300, ridge_examples=2048, embed_replaced_only=True,
                                 gradient_checkpointing=True, aggregate="first"),
    "full": PipelinePreset(steps=400, warmup=40, tokens=2048, eval_every=100, alpha=20.0, lr=1e-5,
                           max_valid=1000, embed_replaced_only=True, gradient_checkpointing=True, aggregate="first"),
}


def pipeline_preset(name: str, kind: str) -> PipelinePreset:
    """The settings of preset ``name`` for a model of architecture ``kind`` (`defemb.models.config_kind`)."""
    if name not in PIPELINE_PRESETS:
        raise DefembError(f"unknown --preset '{name}'; choose one of {', '.join(PIPELINE_PRESETS)}")
    return DECODER_PRESETS.get(name, PIPELINE_PRESETS[name]) if kind == "decoder" else PIPELINE_PRESETS[name]


SHOWN_TOKENS = ("102", "1999", "sediment", "##iment")
NUMBERS_ALL = "numbers_all.json"
STAGES = "stages.json"  # seconds per stage


class Stages:
    """Announces each stage, says how long the last one that ran took, and keeps those times in
    ``OUT/stages.json`` (a continued run adds to the times of the stages it did not redo). ``ran`` says
    whether any stage ran in this call: outputs built from every stage (the report) are then stale."""

    def __init__(self, out: Path) -> None:
        self.path = out / STAGES
        self.seconds: dict[str, float] = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.running: tuple[str, float] | None = None
        self.ran = False

    def __call__(self, name: str, done: bool) -> bool:
        """True when the stage must run (``done``: its output is complete already)."""
        self.close()
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {'already done, skipped' if done else 'running'}", flush=True)
        if not done:
            self.running = (name, time.perf_counter())
            self.ran = True
        return not done

    def close(self) -> None:
        if self.running is None:
            return
        name, start = self.running
        self.running = None
        self.seconds[name] = round(time.perf_counter() - start, 1)
        release_memory()
        print(f"  {name}: {self.seconds[name]:.0f} s (peak RSS of the run so far {peak_rss_gb():.2f} GB)", flush=True)
        write_json_atomic(self.path, self.seconds)


def peak_rss_gb() -> float:
    """The process's peak resident set size so far, in GB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def release_memory() -> None:
    """Between stages: collect what the stage left and hand glibc's freed heap back to the system, so the next
    stage's peak does not sit on top of the last one's (a no-op where there is no glibc)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def run_pipeline(out: str | Path, preset: str = "quickstart", model: str = "minilm",
                 sources: Sequence[str] = ("gcide",), ranking: str | None = None, seed: int = 0) -> str:
    """Run (or continue) every stage; returns the before/after Markdown. ``sources``: dictionary specs, as in
    `corpus build` (the corpus and the new words' definitions are read from all of them)."""
    settings = pipeline_preset(preset, config_kind(model))
    if not sources:
        raise DefembError("`defemb run` needs at least one dictionary source")
    try:
        return _run_stages(Path(out), settings, model, list(sources), ranking, seed)
    except KeyboardInterrupt as exc:
        # A stage's own note names its own flags (--resume); here rerunning the same command continues.
        exc.__notes__ = [f"finished stages are kept in '{out}'; rerun the same `defemb run` command to continue"]
        raise


def _run_stages(out: Path, settings: PipelinePreset, model: str, sources: list[str], ranking: str | None,
                seed: int) -> str:
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("before", "corpus", "train", "after", "model", "extended",
                                           "wordsim_added")}
    emb = out / "definitions.safetensors"

    vocab = load_tokenizer(model).get_vocab()
    shown = [t for t in SHOWN_TOKENS if t in vocab]
    stage = Stages(out)

    def analysis(model_name: str):
        return analyze(AnalyzeConfig(model=model_name, ranking=ranking, tokens=shown, sample=5, seed=seed))

    if stage("analyze (before)", (paths["before"] / "analysis.json").exists()):
        write_analysis(analysis(model), paths["before"])
    if stage("corpus", (paths["corpus"] / "stats.json").exists()):
        build_corpus(CorpusConfig(tokenizer=model, sources=sources), paths["corpus"], force=False,
                     resume=(out / "corpus.partial").exists())
    if stage("train", (paths["train"] / "head.safetensors").exists()):
        if interrupted(paths["train"]):
            resume(paths["train"])
        else:
            bf16 = use_bf16()
            print(f"  bf16 autocast {'on' if bf16 else 'off'}: measured {bf16_speedup():.2f}x the float32 speed here",
                  flush=True)
            config = TrainConfig(model=model, corpus=str(paths["corpus"]), steps=settings.steps,
                                 warmup=settings.warmup, tokens=settings.tokens, eval_every=settings.eval_every,
                                 save_every=settings.eval_every, lr=settings.lr, max_valid=settings.max_valid,
                                 ridge_examples=settings.ridge_examples, bf16=bf16, seed=seed,
                                 gradient_checkpointing=settings.gradient_checkpointing, contrast=settings.contrast,
                                 token_weight=settings.token_weight)
            train(config, paths["train"])
    config = replace_config(model, emb, paths["corpus"], settings.alpha, ranking)
    if stage("embed", emb.exists()):
        wanted = partial(ids_to_embed, [config, numbers_variant(config)]) if settings.embed_replaced_only else None
        embed(paths["train"], paths["corpus"], emb, aggregate=settings.aggregate, select=wanted)
    if stage("replace", (paths["model"] / "replaced.tsv").exists()):
        replace(config, paths["model"])
    if stage("replace --numbers all (measured, not written)", (out / NUMBERS_ALL).exists()):
        write_json_atomic(out / NUMBERS_ALL, numbers_all(config))
    if stage("analyze (after)", (paths["after"] / "analysis.json").exists()):
        write_analysis(analysis(str(paths["model"])), paths["after"])
    sets = similarity_sets()
    if stage("extend (words the vocabulary splits)", (paths["extended"] / "added.tsv").exists()
              or (out / SKIPPED).exists()):
        run_extension(out, model, paths["train"], sources, sets)
    if sets is not None and (paths["extended"] / "added.tsv").exists() and stage(
            "word similarity of the new tokens", (paths["wordsim_added"] / "definitionemb").exists()):
        score_extension(paths["extended"], sets, paths["wordsim_added"])
    sections = extension_sections(out)
    # Built from every stage's output: redone whenever a stage ran in this call, so it is never stale.
    if stage("report (before | after)", (out / "report.html").exists() and not stage.ran):
        summaries = {name: load_summary(paths[name]) for name in ("before", "after")}
        page = repair_page(model, str(paths["model"]), paths["model"] / "replaced.tsv", summaries, ranking=ranking,
                           chosen=shown, notes=[validation_line(paths["train"])], sections=sections)
        write_text_atomic(out / "report.html", page)
    stage.close()
    report = before_after(paths["before"], paths["after"], paths["train"], sections, stage.seconds)
    write_text_atomic(out / "before_after.md", report)
    return report


def replace_config(model: str, emb: Path, corpus: Path, alpha: float, ranking: str | None) -> ReplaceConfig:
    """V_task = the corpus's own tokens; the rarest alpha % of the vocabulary that have a row are replaced,
    numbers among them as the paper's rule picks them (all numbers as one set is reported beside it), each
    band's spread restored along its own directions (``--spread directions``: the calibration that measured
    best, docs/results.md; the paper writes the shrunken rows as they are)."""
    return ReplaceConfig(model=model, embeddings=str(emb), task_data=[str(corpus / "train.jsonl")], alpha=alpha,
                         ranking=ranking, spread="directions")


def numbers_variant(config: ReplaceConfig) -> ReplaceConfig:
    return ReplaceConfig(**{**config.to_dict(), "numbers": "all"})


def numbers_all(config: ReplaceConfig) -> dict:
    """Numeric Max Difference of the table `replace --numbers all` would write (every number rebuilt)."""
    table, result = replaced_table(numbers_variant(config))
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
    kept = f"the weights of step {summary['best_step']} kept" if summary.get("weights", "").startswith("best") \
        else "the last weights kept"
    position = "–" if summary["best_valid_mse"] is None else f"{summary['best_valid_mse']:.4f}"
    line = (f"Validation ‖e−ẽ‖² per position: mean-row predictor {start['mean_row_mse']:.4f}, trained model "
            f"{position} at the kept step, after {summary['steps']} steps ({kept}, chosen on "
            f"the error per {'token' if summary.get('selected_on') == 'valid_token_mse' else 'position'}).")
    best = [m for m in metrics if m["step"] == summary.get("best_step") and "valid_token_mse_rare" in m]
    if best and "band_mean_token_mse_rare" in start:  # runs before per-token validation lack them
        line += (f" Per token, rare band: its own mean row {start['band_mean_token_mse_rare']:.4f}, trained model "
                 f"{best[-1]['valid_token_mse_rare']:.4f}; medium band: {start['band_mean_token_mse_medium']:.4f}, "
                 f"{best[-1]['valid_token_mse_medium']:.4f}.")
    return line


def before_after(before: Path, after: Path, run: Path, sections: list = (), seconds: dict | None = None) -> str:
    """The Markdown report: the repair's band table and neighbours, then the extension's ``sections``, then
    the seconds each stage took (``seconds``)."""
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
    if seconds:
        rows = [[name, f"{value:.0f}"] for name, value in seconds.items()]
        rows.append(["total", f"{sum(seconds.values()):.0f}"])
        parts += ["## Time per stage", "", f"On {cpu_name()}, {torch.get_num_threads()} threads.", "",
                  markdown_table(["stage", "seconds"], rows), ""]
    parts += [f"Interactive report, before | after: {after.parent / 'report.html'}", ""]
    return "\n".join(parts)
