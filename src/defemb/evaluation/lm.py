"""`defemb evaluate lm`: how well a causal LM predicts held-out text, its rare tokens, and chosen (new) words.

Per model, on the same documents (the first ``max_docs``, each cut to ``max_length`` tokens):

* ``text/bpb`` (primary): bits per UTF-8 byte of the text the model scored, the mean over documents.
  Per byte, not per token, so models whose tokenizers differ (an extended vocabulary) compare fairly.
* ``text/nll``: mean NLL per predicted token (nats), and ``text/ppl`` = exp of it.
* ``rare/nll``: mean NLL over the predicted tokens that lie in the rare band of the model's frequency ranking
  (METHOD §3; tokens added after the ranking was made are not in any band), pooled over documents.

With ``words`` (an ``added.tsv`` written by `add-tokens`/`extend`, or one word per line), on up to
``sentences_per_word`` sentences of the documents that contain each word (as a whole word):

* ``word/nll``: NLL of the word itself in nats — its one new token where the model has it (how well its
  row serves as *output*, through a tied head), or the sum over its pieces on the original vocabulary;
* ``after/nll``: mean NLL per token of the ≤ ``after`` tokens that follow the word (how well its row
  serves as *input*).

The (word, sentence) examples are the same for every model, so both have per-example scores for the
paired bootstrap of `defemb results`.
"""

from __future__ import annotations

import csv
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from defemb.errors import DefembError, quote
from defemb.evaluation.records import (
    RunRecord,
    error_line,
    finished,
    open_out,
    parse_model_specs,
    write_record,
)
from defemb.method.model import pad_batch
from defemb.tokens import padding_id, special_frame

EVALUATOR = "lm"
PRIMARY = "text/bpb"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass
class LmConfig:
    """Settings of `defemb evaluate lm`."""

    models: list[str] = field(metadata={"help": "LABEL=PATH or PATH of causal LMs (dir, hub name, smollm2, .gguf)"})
    data: str = field(default="cnndm", metadata={"help": "cnndm | xsum (test documents) | FILE (.jsonl/.csv/.tsv: "
                                                          "text columns; other files: one text per line)"})
    max_docs: int = field(default=200, metadata={"help": "documents scored (the first N)"})
    max_length: int = field(default=256, metadata={"help": "tokens per document (longer ones are cut)"})
    words: str | None = field(default=None, metadata={"help": "added.tsv or a word list: NLL of and after each word"})
    sentences_per_word: int = field(default=8, metadata={"help": "sentences scored per word (the first found)"})
    after: int = field(default=24, metadata={"help": "tokens after the word that are scored"})
    ranking: str | None = field(default=None, metadata={"help": "frequency ranking for the rare band"})
    batch_size: int = field(default=4, metadata={"help": "documents per forward pass"})
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if not self.models:
            raise DefembError("--models: name at least one model")
        check_counts(self, ("max_docs", "max_length", "sentences_per_word", "after", "batch_size"))
        if self.max_length < 2:
            raise DefembError("--max-length must be at least 2 (one token to read, one to predict)")


def check_counts(config, names: tuple[str, ...]) -> None:
    """Each named setting of ``config`` is a whole number >= 1; the first that is not is a one-line error."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise DefembError(f"--{name.replace('_', '-')} must be a whole number >= 1, got {value!r}")


def word_token_indices(offsets: list[tuple[int, int]], text: str, at: int, length: int) -> list[int]:
    """Indices of the tokens that spell the word at characters ``at``..``at + length`` of ``text``: those whose
    characters overlap it or the space just before it, which byte-level BPE spells as part of the word
    ("Ġword", or a lone "Ġ" before its pieces)."""
    lead = at - 1 if at > 0 and text[at - 1].isspace() else at
    return [k for k, (a, b) in enumerate(offsets) if a < at + length and b > lead and b > a]


def read_documents(spec: str, limit: int) -> tuple[list[str], str]:
    """The first ``limit`` documents of ``spec`` and where they came from."""
    from defemb.evaluation.summ_data import load_task
    from defemb.replace import task_texts

    if spec in ("cnndm", "xsum"):
        splits = load_task(spec)
        return [e.document for e in splits.test[:limit]], splits.sources["test"]
    path = Path(spec)
    if not path.is_file():
        raise DefembError(f"--data {quote(spec)}: not cnndm, xsum or an existing file")
    texts = []
    for text in task_texts(path):
        if text.strip():
            texts.append(text.strip())
        if len(texts) >= limit:
            break
    if not texts:
        raise DefembError(f"--data '{path}': no text found")
    return texts, str(path)


def read_words(path: str | Path) -> list[str]:
    """Words from an ``added.tsv`` (its ``word`` column) or a plain list (first field of each line)."""
    path = Path(path)
    if not path.is_file():
        raise DefembError(f"--words '{path}' does not exist")
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = list(csv.reader(lines, delimiter="\t"))
    start = 1 if rows and rows[0] and rows[0][0] == "word" else 0
    words = []
    for number, row in enumerate(rows[start:], start=start + 1):
        word = row[0].strip() if row else ""
        if not word:
            continue
        if any(c.isspace() for c in word):
            raise DefembError(f"{path}:{number}: word {quote(word)} contains white space")
        words.append(word)
    if not words:
        raise DefembError(f"--words '{path}' lists no words")
    return list(dict.fromkeys(words))


def word_examples(documents: list[str], words: list[str], per_word: int) -> list[tuple[str, str, int]]:
    """(word, sentence, character offset of the word) for up to ``per_word`` sentences per word, in document
    order; the word must stand alone (not inside a longer word) and not open the sentence."""
    sentences = [s for doc in documents for s in _SENTENCE_END.split(doc) if s.strip()]
    examples = []
    for word in words:
        pattern = re.compile(rf"(?<![\w-]){re.escape(word)}(?![\w-])")
        found = 0
        for sentence in sentences:
            match = pattern.search(sentence, 1)
            if match is None:
                continue
            examples.append((word, sentence, match.start()))
            found += 1
            if found == per_word:
                break
    return examples


@torch.no_grad()
def token_nll(model, batch: list[list[int]], pad_id: int) -> list[np.ndarray]:
    """For each id sequence, the NLL (nats) of tokens 1..n-1 given those before (length n-1)."""
    input_ids, mask = (t.to(model.device) for t in pad_batch(batch, pad_id))
    logits = model(input_ids=input_ids, attention_mask=mask).logits.float()  # (B, T, V)
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    nll = -logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1).cpu()  # (B, T-1)
    return [nll[row, : len(ids) - 1].numpy() for row, ids in enumerate(batch)]


def start_ids(tokenizer) -> list[int]:
    """What the tokenizer puts before a text (Llama: <s>); without it, BOS (or EOS) so the first token is scored."""
    start = special_frame(tokenizer)[0]
    if start:
        return start
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return [token] if token is not None else []


def score_documents(model, tokenizer, documents: list[str], max_length: int, rare: set[int], batch_size: int) -> dict:
    prefix = start_ids(tokenizer)
    pad_id = padding_id(tokenizer)
    bpb, per_token, rare_sum, rare_count, token_sum, token_count = [], [], 0.0, 0, 0.0, 0
    for start in range(0, len(documents), batch_size):
        chunk = documents[start : start + batch_size]
        encoded = tokenizer(chunk, add_special_tokens=False, return_offsets_mapping=True)
        batch, scored_bytes = [], []
        for text, ids, offsets in zip(chunk, encoded["input_ids"], encoded["offset_mapping"], strict=True):
            ids = ids[: max_length - len(prefix)]
            end = offsets[len(ids) - 1][1] if ids else 0
            batch.append(prefix + ids)
            scored_bytes.append(len(text[:end].encode("utf-8")))
        for ids, nll, n_bytes in zip(batch, token_nll(model, batch, pad_id), scored_bytes, strict=True):
            targets = np.array(ids[1:])[len(prefix) - 1 :]
            nll = nll[len(prefix) - 1 :]
            bpb.append(float(nll.sum() / math.log(2) / max(n_bytes, 1)))
            per_token.append(float(nll.mean()))
            token_sum, token_count = token_sum + float(nll.sum()), token_count + len(nll)
            is_rare = np.isin(targets, list(rare))
            rare_sum, rare_count = rare_sum + float(nll[is_rare].sum()), rare_count + int(is_rare.sum())
    metrics = {"text/bpb": float(np.mean(bpb)), "text/nll": token_sum / token_count,
               "text/ppl": math.exp(token_sum / token_count), "text/tokens": float(token_count)}
    if rare_count:
        metrics.update({"rare/nll": rare_sum / rare_count, "rare/tokens": float(rare_count)})
    return {"metrics": metrics, "per_example": {"text/bpb": bpb}}


def score_words(model, tokenizer, examples: list[tuple[str, str, int]], after: int, batch_size: int) -> dict:
    """NLL of each example's word (summed over its tokens) and mean NLL of the ≤ ``after`` tokens after it."""
    prefix = start_ids(tokenizer)
    pad_id = padding_id(tokenizer)
    word_nll, after_nll = [], []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        batch, spans = [], []
        for word, sentence, at in chunk:
            encoded = tokenizer(sentence, add_special_tokens=False, return_offsets_mapping=True)
            offsets = encoded["offset_mapping"]
            inside = word_token_indices(offsets, sentence, at, len(word))
            if not inside:
                raise DefembError(f"word {quote(word)}: no token covers it in {quote(sentence)}")
            first, last = inside[0], inside[-1]
            ids = encoded["input_ids"][: last + 1 + after]
            batch.append(prefix + ids)
            spans.append((len(prefix) + first, len(prefix) + last + 1, len(prefix) + len(ids)))
        for nll, (a, b, end) in zip(token_nll(model, batch, pad_id), spans, strict=True):
            word_nll.append(float(nll[a - 1 : b - 1].sum()))  # nll[t-1] is the NLL of token t
            after_nll.append(float(nll[b - 1 : end - 1].mean()) if end > b else float("nan"))
    keep = [k for k, v in enumerate(after_nll) if not math.isnan(v)]
    metrics = {"word/nll": float(np.mean(word_nll)), "word/examples": float(len(word_nll))}
    per_example = {"word/nll": word_nll}
    if len(keep) == len(after_nll):  # every word has text after it: the lists stay aligned across models
        metrics["after/nll"] = float(np.mean(after_nll))
        per_example["after/nll"] = after_nll
    elif keep:
        metrics["after/nll"] = float(np.mean([after_nll[k] for k in keep]))
    return {"metrics": metrics, "per_example": per_example}


def run_lm(config: LmConfig, out: str | Path, force: bool = False) -> list[RunRecord]:
    """One record per model under OUT; documents and words are read and checked before any model loads."""
    from defemb.frequency import rank_tokens
    from defemb.models import load_model, resolve_model_name

    specs = parse_model_specs(config.models)
    for spec in specs:
        resolve_model_name(spec.path)
    documents, source = read_documents(config.data, config.max_docs)
    words = read_words(config.words) if config.words else []
    examples = word_examples(documents, words, config.sentences_per_word)
    if words and not examples:
        raise DefembError(f"none of the {len(words)} words of '{config.words}' occurs in the {len(documents)} "
                          f"documents of {source}")
    settings = {**asdict(config), "source": source, "documents": len(documents), "word_examples": len(examples)}
    open_out(out, settings, force, free=("models", "trust_remote_code", "batch_size"), what=EVALUATOR)
    records = []
    for spec in tqdm(specs, desc="lm", unit="model"):
        if finished(out, spec.label, None):
            continue
        started = time.perf_counter()
        base = dict(evaluator=EVALUATOR, task=Path(source).stem if config.data not in ("cnndm", "xsum") else
                    config.data, model=spec.path, label=spec.label, seed=None, primary=PRIMARY,
                    config={**settings, "models": [f"{spec.label}={spec.path}"]})
        try:
            loaded = load_model(spec.path, trust_remote_code=config.trust_remote_code)
            if loaded.kind != "decoder":
                raise DefembError(f"{spec.path} is a {loaded.kind} model; evaluate lm needs a causal LM")
            ranking = rank_tokens(loaded.tokenizer, loaded.model.get_input_embeddings().weight.shape[0],
                                  config.ranking, loaded.tokenizer_kind)
            result = score_documents(loaded.model, loaded.tokenizer, documents, config.max_length,
                                     set(ranking.bands["rare"].tolist()), config.batch_size)
            if examples:
                extra = score_words(loaded.model, loaded.tokenizer, examples, config.after, config.batch_size)
                result["metrics"].update(extra["metrics"])
                result["per_example"].update(extra["per_example"])
            record = RunRecord(**base, metrics=result["metrics"], per_example=result["per_example"],
                               wall_s=time.perf_counter() - started)
        except Exception as exc:  # one model failing must not stop the others; its record says why
            record = RunRecord(**base, status="failed", error=error_line(exc), wall_s=time.perf_counter() - started)
        write_record(out, record)
        records.append(record)
    return records
