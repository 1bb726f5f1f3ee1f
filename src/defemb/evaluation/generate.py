"""`defemb evaluate generate`: what a chat model says about a word, through its chat template.

For each model and each of the first ``max_words`` words, the prompt ("What does {word} mean?" by default)
goes through the tokenizer's chat template (plain text where it has none) and the answer is decoded
greedily, so a rerun gives the same text. With a `defemb extend` checkpoint the word in the prompt is its
new token; the output says which tokens the word became in each model, so a reader sees that it was.

Writes ``OUT/<label>.json`` per model (a rerun skips models already done) and ``OUT/generations.md``, one
section per word with every model's answer side by side.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from defemb.errors import DefembError, quote
from defemb.evaluation.lm import check_counts, read_words, word_token_indices
from defemb.evaluation.records import open_out, parse_model_specs
from defemb.outputs import write_json_atomic, write_text_atomic

EVALUATOR = "generate"
REPORT = "generations.md"


@dataclass
class GenerateConfig:
    """Settings of `defemb evaluate generate`."""

    models: list[str] = field(metadata={"help": "LABEL=PATH or PATH of causal LMs (dir, hub name, smollm2, .gguf)"})
    words: str = field(metadata={"help": "added.tsv (from extend/add-tokens) or one word per line"})
    prompt: str = field(default="What does {word} mean?", metadata={"help": "user message; {word} is the word"})
    max_words: int = field(default=8, metadata={"help": "the first N words of --words"})
    max_new_tokens: int = field(default=48, metadata={"help": "tokens generated per answer (greedy)"})
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if not self.models:
            raise DefembError("--models: name at least one model")
        if "{word}" not in self.prompt:
            raise DefembError(f"--prompt {quote(self.prompt)} has no {{word}} to put the word in")
        check_counts(self, ("max_words", "max_new_tokens"))


def prompt_ids(tokenizer, message: str) -> list[int]:
    """The ids a chat model sees for one user message: its chat template with the assistant's turn opened,
    or the message as plain text where the tokenizer has no template."""
    if getattr(tokenizer, "chat_template", None):
        encoded = tokenizer.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True,
                                                tokenize=True, return_dict=True)
        return list(encoded["input_ids"])
    return tokenizer(message)["input_ids"]


def word_tokens(tokenizer, message: str, word: str, at: int) -> list[str]:
    """The tokens that spell ``word`` at character ``at`` of ``message`` (byte-level BPE: with its leading
    space)."""
    encoded = tokenizer(message, add_special_tokens=False, return_offsets_mapping=True)
    ids = [encoded["input_ids"][k] for k in word_token_indices(encoded["offset_mapping"], message, at, len(word))]
    return tokenizer.convert_ids_to_tokens(ids)


@torch.no_grad()
def answer(model, tokenizer, message: str, max_new_tokens: int) -> str:
    """The greedy answer to one user message, special tokens left out."""
    ids = torch.tensor([prompt_ids(tokenizer, message)])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         do_sample=False, pad_token_id=pad)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


def generate_one(path: str, words: list[str], config: GenerateConfig) -> dict:
    """Every word's answer from one model, with the tokens the word became."""
    from defemb.models import load_model

    started = time.perf_counter()
    loaded = load_model(path, trust_remote_code=config.trust_remote_code)
    if loaded.kind != "decoder":
        raise DefembError(f"{path} is a {loaded.kind} model; evaluate generate needs a causal LM")
    loaded.model.eval()
    before = config.prompt[: config.prompt.index("{word}")]  # the prompt's text before the word
    answers = []
    for word in tqdm(words, desc=Path(path).name, unit="word", leave=False):
        message, at = config.prompt.format(word=word), len(before.format(word=word))
        answers.append({"word": word, "prompt": message, "tokens": word_tokens(loaded.tokenizer, message, word, at),
                        "answer": answer(loaded.model, loaded.tokenizer, message, config.max_new_tokens)})
    return {"model": path, "answers": answers, "wall_s": time.perf_counter() - started}


def report(config: GenerateConfig, labels: list[str], results: dict[str, dict]) -> str:
    """Markdown: one section per word, a row per model (its tokens for the word, its answer)."""
    lines = ["# Generations", "", f"Prompt: {config.prompt!r} through each model's chat template; greedy, "
             f"at most {config.max_new_tokens} new tokens.", ""]
    words = [a["word"] for a in results[labels[0]]["answers"]]
    for k, word in enumerate(words):
        lines += [f"## {word}", "", "| model | word as tokens | answer |", "|---|---|---|"]
        for label in labels:
            item = results[label]["answers"][k]
            shown = " ".join(f"`{t}`" for t in item["tokens"])
            text = item["answer"].replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {label} | {shown} | {text} |")
        lines.append("")
    return "\n".join(lines)


def run_generate(config: GenerateConfig, out: str | Path, force: bool = False) -> dict[str, dict]:
    """Answers of every model (resuming those already in OUT); writes OUT/generations.md; returns label -> result."""
    from defemb.models import resolve_model_name

    specs = parse_model_specs(config.models)
    for spec in specs:
        resolve_model_name(spec.path)
    words = read_words(config.words)[: config.max_words]
    out = open_out(out, asdict(config), force, free=("models", "trust_remote_code"), what=EVALUATOR)
    results = {}
    for spec in tqdm(specs, desc="generate", unit="model"):
        path = out / f"{spec.label}.json"
        if path.is_file():
            results[spec.label] = json.loads(path.read_text(encoding="utf-8"))
            continue
        results[spec.label] = generate_one(spec.path, words, config)
        write_json_atomic(path, results[spec.label])
    write_text_atomic(out / REPORT, report(config, [s.label for s in specs], results))
    return results
