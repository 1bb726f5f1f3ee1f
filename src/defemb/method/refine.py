"""Refine the rows of new words in a causal LM on their own definitions (`extend --refine STEPS`, METHOD §8).

A predicted row is read by a body that never saw it. On SmolLM2 the rows DefinitionEMB predicts serve
worse as input than the mean row (docs/results.md), and a tied head makes the same row the word's output
row. Refinement takes a few gradient steps on the new rows alone. Every weight of the model stays as it
is, and so does every original row. The aim is that the model reading the word as its one new token
behaves as the original model does when it reads the word as its pieces. Two short texts per word are
built from the word's definition and nothing else, so no task or evaluation text is seen:

* **input**, ``"The word W means: DEFINITION."``: at each of the ≤ ``after`` tokens that follow the word, the
  KL divergence KL(p_orig ‖ p_new) of the next-token distributions. p_orig is the original model on the
  pieces, over the original vocabulary. p_new is the extended model on the new token; the mass it gives to
  new tokens counts as lost, so a row cannot win by making itself likely everywhere.
* **output**, ``"DEFINITION. The word for this is W."``: (log p_new(W) − log p_orig(pieces of W))² at the
  word, weighted by ``output_weight``. It asks that the one token be as likely after its definition as the
  original model finds the whole word.

The original model is the extended model itself, read on the pieces with its logits cut to the original
vocabulary. The body and the original rows are the same, so no second copy is loaded. The teacher's
distributions are computed once, before the first step. A word that occurs again inside its definition
is spelt out as its pieces for the teacher everywhere; the student positions that predict a new token are
skipped. Both read the texts after the tokenizer's start tokens, padded on the right with a mask, in the
same precision.

Adam with a constant learning rate. The texts are sorted by length and cut into fixed batches, one step
per batch in turn, so a run is deterministic. Progress is saved to a state file every ``save_every`` steps
and an interrupted refinement resumes from it to the same rows.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from defemb.errors import DefembError
from defemb.method.model import pad_batch
from defemb.tokens import padding_id

INPUT_TEMPLATE = "The word {word} means: {definition}."
OUTPUT_TEMPLATE = "{definition}. The word for this is {word}."


@dataclass
class RefineConfig:
    """Settings of the refinement (`extend --refine STEPS` and the ``--refine-*`` options)."""

    steps: int = 30  # optimiser steps, one batch of texts each
    lr: float = 5e-3
    after: int = 16  # tokens after the word whose distributions are matched
    output_weight: float = 0.1
    batch_size: int = 40  # texts per step
    max_chars: int = 120  # the definition is cut at a word boundary to at most this many characters
    save_every: int = 10

    def __post_init__(self) -> None:
        for name in ("steps", "after", "batch_size", "max_chars", "save_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise DefembError(f"--refine-{name.replace('_', '-')} must be a whole number >= 1, got {value!r}")
        if not self.lr > 0 or self.output_weight < 0:
            raise DefembError(f"--refine-lr must be > 0 and the output weight >= 0 (got {self.lr}, "
                              f"{self.output_weight})")


@dataclass
class Text:
    """One training text: the student's ids, the teacher's (the word as its pieces) and what to match."""

    word: int  # index of the new word
    student: list[int]
    teacher: list[int]
    match: list[tuple[int, int]]  # (student position, teacher position) whose next-token distributions agree
    output: tuple[int, list[int]] | None  # (student position before the word, teacher positions of its pieces)


def cut(definition: str, max_chars: int) -> str:
    """The definition without its final full stop, cut at a word boundary to ≤ ``max_chars`` characters."""
    text = " ".join(definition.split()).rstrip(".")
    if len(text) <= max_chars:
        return text
    return text[:max_chars].rsplit(" ", 1)[0] or text[:max_chars]


def spell_out(student: list[int], pieces: dict[int, list[int]]) -> tuple[list[int], list[int]]:
    """The teacher's ids (every new token replaced by its pieces) and where each student token starts in them."""
    teacher, starts = [], []
    for token in student:
        starts.append(len(teacher))
        teacher.extend(pieces.get(token, [token]))
    return teacher, starts


def build_text(word: int, new_id: int, student: list[int], pieces: dict[int, list[int]], after: int,
               output: bool) -> Text | None:
    """Aligned positions for one text; None if the word's token is not in it."""
    if new_id not in student:
        return None
    teacher, starts = spell_out(student, pieces)
    at = student.index(new_id)
    # student position p predicts student token p+1, which the teacher predicts from the position before it starts
    match = [(p, starts[p + 1] - 1) for p in range(at, len(student) - 1) if student[p + 1] not in pieces][:after]
    spelled = None
    if output and at > 0:
        spelled = (at - 1, [starts[at] - 1 + q for q in range(len(pieces[new_id]))])
    return Text(word, student, teacher, match, spelled)


def build_texts(tokenizer, words: list[str], definitions: list[str], ids: list[int], pieces: list[list[int]],
                config: RefineConfig) -> list[Text]:
    """Both texts of every word, tokenized with the extended tokenizer, sorted by length (stable)."""
    from defemb.evaluation.lm import start_ids

    prefix = start_ids(tokenizer)
    spelled = dict(zip(ids, pieces, strict=True))
    for word, word_pieces in zip(words, pieces, strict=True):
        if not word_pieces or set(word_pieces) & set(ids):
            raise DefembError(f"refinement: the pieces of {word!r} must be ids of the original vocabulary, "
                              f"got {word_pieces}")
    texts = []
    for k, (word, definition, new_id) in enumerate(zip(words, definitions, ids, strict=True)):
        short = cut(definition, config.max_chars)
        for template, output in ((INPUT_TEMPLATE, False), (OUTPUT_TEMPLATE, True)):
            encoded = tokenizer(template.format(word=word, definition=short), add_special_tokens=False)["input_ids"]
            text = build_text(k, new_id, prefix + encoded, spelled, config.after, output)
            if text is not None and (text.match or text.output):
                texts.append(text)
    return sorted(texts, key=lambda t: len(t.student))


class Refiner:
    """The new rows as one parameter, put into the model's table (and its untied output head) for each forward."""

    def __init__(self, model, ids: list[int], rows: np.ndarray, bf16: bool = False):
        self.model = model
        size = model.get_input_embeddings().weight.shape[0]
        if len(set(ids)) != len(ids) or not all(0 <= i < size for i in ids):
            raise DefembError(f"refinement: the new token ids must be distinct rows of the table (< {size})")
        self.device = model.get_input_embeddings().weight.device
        self.ids = torch.tensor(ids, dtype=torch.long, device=self.device)
        self.original = torch.ones(size, dtype=torch.bool, device=self.device)  # what the original model predicts
        self.original[self.ids] = False
        names = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
        self.input_name = names[id(model.get_input_embeddings().weight)]
        head = model.get_output_embeddings()
        if head is None or getattr(head, "bias", None) is not None:
            raise DefembError("refinement needs a causal LM whose output head is a table without bias")
        self.tied = head.weight is model.get_input_embeddings().weight
        self.output_name = None if self.tied else names[id(head.weight)]
        self.new = torch.nn.Parameter(torch.tensor(rows, dtype=torch.float32, device=self.device))  # ``ids`` order
        self.new_out = None if self.tied else torch.nn.Parameter(head.weight.detach()[self.ids].clone())
        self.bf16 = bf16
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        for p in self.trainable:
            p.requires_grad_(False)

    def release(self) -> None:
        """Give the model's weights back their own ``requires_grad``."""
        for p in self.trainable:
            p.requires_grad_(True)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [self.new] if self.tied else [self.new, self.new_out]

    def logits(self, batch: list[list[int]], pad_id: int) -> torch.Tensor:
        """Logits over the whole extended vocabulary, with the current new rows, in float32. # (B, L, V)"""
        weights = {self.input_name: self._table(self.model.get_input_embeddings().weight, self.new)}
        if not self.tied:
            weights[self.output_name] = self._table(self.model.get_output_embeddings().weight, self.new_out)
        ids, mask = (t.to(self.device) for t in pad_batch(batch, pad_id))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = torch.func.functional_call(self.model, weights, (), {"input_ids": ids, "attention_mask": mask})
        return logits.logits.float()

    def _table(self, weight: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        return weight.detach().index_put((self.ids,), new)

    def write_back(self) -> np.ndarray:
        """Put the refined rows into the model's tables; returns them in the order of ``ids``. # (n, h)"""
        with torch.no_grad():
            self.model.get_input_embeddings().weight[self.ids] = self.new.detach()
            if not self.tied:
                self.model.get_output_embeddings().weight[self.ids] = self.new_out.detach()
        return self.new.detach().cpu().numpy().copy()


@torch.no_grad()
def teacher_targets(refiner: Refiner, texts: list[Text], pad_id: int, batch_size: int
                    ) -> list[tuple[torch.Tensor, float | None]]:
    """Per text, the original model's log-probabilities over the original vocabulary (every row but the new
    ones) at the matched positions, and its log-probability of the word's pieces (the output text).
    # [(m, V - n), float | None]"""
    targets = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        logits = refiner.logits([t.teacher for t in chunk], pad_id)  # teacher ids hold no new token
        for row, text in zip(logits, chunk, strict=True):
            original = row.masked_fill(~refiner.original, -torch.inf).log_softmax(-1)  # the new rows play no part
            matched = original[[q for _, q in text.match]][:, refiner.original]
            spelled = None
            if text.output is not None:
                _, positions = text.output
                spelled = float(sum(original[q, text.teacher[q + 1]] for q in positions))
            targets.append((matched, spelled))
    return targets


def batch_loss(refiner: Refiner, texts: list[Text], targets: list, pad_id: int, config: RefineConfig
               ) -> tuple[torch.Tensor, float, float]:
    """Mean over the batch's texts of the matched KL plus the weighted output term; and the two parts."""
    log_probs = refiner.logits([t.student for t in texts], pad_id).log_softmax(-1)
    kls, outs = [], []
    for row, text, (teacher, spelled) in zip(log_probs, texts, targets, strict=True):
        if text.match:
            student = row[[p for p, _ in text.match]][:, refiner.original]
            kls.append((teacher.exp() * (teacher - student)).sum(-1).mean())
        if text.output is not None and spelled is not None:
            position, _ = text.output
            outs.append((row[position, text.student[position + 1]] - spelled) ** 2)
    kl = torch.stack(kls).mean() if kls else torch.zeros(())
    out = torch.stack(outs).mean() if outs else torch.zeros(())
    return kl + config.output_weight * out, float(kl.detach()), float(out.detach())


def fingerprint(texts: list[Text], rows: np.ndarray, config: RefineConfig) -> str:
    """What a saved state must match to be resumed: the texts, the starting rows and the settings."""
    digest = hashlib.sha256()
    digest.update(json.dumps([[t.student, t.match] for t in texts]).encode())
    digest.update(np.ascontiguousarray(rows, dtype=np.float32).tobytes())
    digest.update(json.dumps({k: v for k, v in asdict(config).items() if k != "save_every"}).encode())
    return digest.hexdigest()


def save_state(path: Path, refiner: Refiner, optimiser: torch.optim.Adam, step: int, key: str, log: list) -> None:
    tensors = {f"param{k}": p.detach().clone() for k, p in enumerate(refiner.parameters())}
    for k, p in enumerate(refiner.parameters()):
        state = optimiser.state.get(p)
        if state:
            tensors |= {f"exp_avg{k}": state["exp_avg"], f"exp_avg_sq{k}": state["exp_avg_sq"],
                        f"adam_step{k}": torch.as_tensor(state["step"], dtype=torch.float64).reshape(1)}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, tmp, metadata={"fingerprint": key, "step": str(step), "log": json.dumps(log)})
    os.replace(tmp, path)


def load_state(path: Path, refiner: Refiner, optimiser: torch.optim.Adam, key: str) -> tuple[int, list]:
    """The step and log of a saved state that matches ``key``; (0, []) when there is none or it does not match."""
    from safetensors import safe_open

    if not path.is_file():
        return 0, []
    with safe_open(path, "pt") as handle:
        meta = handle.metadata() or {}
    if meta.get("fingerprint") != key:
        return 0, []
    tensors = load_file(path, device=str(refiner.device))
    with torch.no_grad():
        for k, p in enumerate(refiner.parameters()):
            p.copy_(tensors[f"param{k}"])
            if f"exp_avg{k}" in tensors:
                optimiser.state[p] = {"step": tensors[f"adam_step{k}"][0].float(),
                                      "exp_avg": tensors[f"exp_avg{k}"], "exp_avg_sq": tensors[f"exp_avg_sq{k}"]}
    return int(meta["step"]), json.loads(meta["log"])


def refine_rows(model, tokenizer, words: list[str], definitions: list[str], ids: list[int],
                pieces: list[list[int]], rows: np.ndarray, config: RefineConfig, state: Path | None = None,
                bf16: bool = False, on_step: Callable[[int], None] | None = None) -> tuple[np.ndarray, dict]:
    """Refined rows for the new tokens ``ids`` (already in ``model``'s tables and ``tokenizer``), starting from
    ``rows``; with a summary (texts, first and last losses). ``state``: file to save to and resume from.
    # (n, h)"""
    texts = build_texts(tokenizer, words, definitions, ids, pieces, config)
    if not texts:
        raise DefembError("refinement: no word's text holds its new token (check the tokenizer's added tokens)")
    pad_id = padding_id(tokenizer)
    refiner = Refiner(model, ids, rows, bf16)
    optimiser = torch.optim.Adam(refiner.parameters(), lr=config.lr)
    key = fingerprint(texts, rows, config)
    done, log = load_state(state, refiner, optimiser, key) if state is not None else (0, [])
    batches = [list(range(s, min(s + config.batch_size, len(texts)))) for s in range(0, len(texts), config.batch_size)]
    model_was_training = model.training
    model.eval()  # no dropout: the teacher and the student read the same network
    try:
        targets = teacher_targets(refiner, texts, pad_id, config.batch_size)
        for step in tqdm(range(done, config.steps), desc="refine", unit="step", initial=done, total=config.steps):
            chosen = batches[step % len(batches)]
            loss, kl, out = batch_loss(refiner, [texts[i] for i in chosen], [targets[i] for i in chosen], pad_id,
                                       config)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            log.append({"step": step + 1, "kl": round(kl, 5), "output": round(out, 5)})
            if state is not None and ((step + 1) % config.save_every == 0 or step + 1 == config.steps):
                save_state(state, refiner, optimiser, step + 1, key, log)
            if on_step is not None:
                on_step(step + 1)
    finally:
        model.train(model_was_training)
        refiner.release()
    refined = refiner.write_back()
    words_seen = len({t.word for t in texts})
    return refined, {"texts": len(texts), "words": words_seen, "steps": config.steps, "log": log,
                     "config": asdict(config)}
