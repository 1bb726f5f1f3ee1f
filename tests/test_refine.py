"""`extend --refine`: new rows of a causal LM refined so that the one token reads as the original reads its pieces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from defemb.extend import add_word_tokens, refine_state_path
from defemb.method.refine import (
    RefineConfig,
    Refiner,
    batch_loss,
    build_text,
    build_texts,
    refine_rows,
    teacher_targets,
)
from defemb.models import get_table, load_model
from defemb.tokens import padding_id
from test_extend import NEW, extend_cli, trained_run  # noqa: F401  (the fixture)

WORDS = list(NEW)


def test_positions_pair_the_token_with_its_pieces():
    # student: [s] new a new b, the new token 50 spelt as pieces 7 8
    text = build_text(0, 50, [1, 50, 2, 50, 3], {50: [7, 8]}, after=16, output=True)
    assert text.teacher == [1, 7, 8, 2, 7, 8, 3]
    # student 1 (new) predicts 2, as teacher 2 (its last piece) does; student 2 predicts the new token: skipped;
    # student 3 (new again) predicts 3, as teacher 5 does
    assert text.match == [(1, 2), (3, 5)]
    assert text.output == (0, [0, 1])  # student 0 predicts the new token; teacher 0 and 1 predict its pieces
    assert build_text(0, 50, [1, 50, 2, 3, 4], {50: [7, 8]}, after=2, output=False).match == [(1, 2), (2, 3)]
    assert build_text(0, 50, [1, 2, 3], {50: [7, 8]}, after=2, output=False) is None


def extended_tiny(model_dir, seed: int = 0, spare: int = 0):
    """The tiny model with the two new words added (rows: random around the table), as `extend` leaves it.
    ``spare``: the table first gets this many unused rows past the vocabulary (as Qwen's has), so the new
    tokens take rows in the middle of the table."""
    loaded = load_model(str(model_dir))
    pieces = [loaded.tokenizer(f" {w}", add_special_tokens=False)["input_ids"] for w in WORDS]  # before the words
    size = len(loaded.tokenizer)
    loaded.model.resize_token_embeddings(size + spare, mean_resizing=False)
    ids = add_word_tokens(loaded.tokenizer, WORDS)
    loaded.model.resize_token_embeddings(max(len(loaded.tokenizer), size + spare), mean_resizing=False)
    E = get_table(loaded.model)
    rng = np.random.default_rng(seed)
    E = E[:size]
    rows = (E.mean(axis=0) + rng.normal(0, E.std(), (len(ids), E.shape[1]))).astype(np.float32)
    with torch.no_grad():
        loaded.model.get_input_embeddings().weight[ids] = torch.tensor(rows)
        if loaded.model.get_output_embeddings().weight is not loaded.model.get_input_embeddings().weight:
            loaded.model.get_output_embeddings().weight[ids] = torch.tensor(rows)
    return loaded, ids.tolist(), rows, pieces


def slow_loss(model, tokenizer, text_student: list[int], new_id: int, pieces: list[int], after: int,
              output: bool, new_ids: list[int], weight: float) -> float:
    """One text, read alone: the extended model on the token, the same model on the pieces (original vocabulary:
    every row but the new ones)."""
    n = len(pieces)
    teacher = []
    for t in text_student:
        teacher += pieces if t == new_id else [t]
    keep = [i for i in range(model.get_input_embeddings().weight.shape[0]) if i not in new_ids]
    with torch.no_grad():
        s = model(input_ids=torch.tensor([text_student])).logits[0].log_softmax(-1)[:, keep]
        t = model(input_ids=torch.tensor([teacher])).logits[0][:, keep].log_softmax(-1)
    column = {token: k for k, token in enumerate(keep)}
    at = text_student.index(new_id)
    kls = []
    for p in range(at, len(text_student) - 1):
        if len(kls) == after:
            break
        q = p + (n - 1) * sum(1 for x in text_student[: p + 1] if x == new_id)  # the pieces shift the teacher
        assert teacher[q + 1] == text_student[p + 1]
        kls.append(float((t[q].exp() * (t[q] - s[p])).sum()))
    value = float(np.mean(kls))
    if output:
        spelled = sum(float(t[at - 1 + k, column[teacher[at + k]]]) for k in range(n))
        with torch.no_grad():
            own = model(input_ids=torch.tensor([text_student])).logits[0, at - 1].log_softmax(-1)[new_id]
        value += weight * (float(own) - spelled) ** 2
    return value


@pytest.mark.parametrize("family, spare", [("gpt2", 0), ("llama", 0), ("gpt2", 5)])  # tied, untied, spare rows
def test_batched_loss_equals_each_text_read_alone(tiny_model_dir, family, spare):
    loaded, ids, rows, pieces = extended_tiny(tiny_model_dir(family), spare=spare)
    assert (max(ids) + 1 < get_table(loaded.model).shape[0]) == bool(spare)
    config = RefineConfig(steps=1, after=3, output_weight=0.3)
    texts = build_texts(loaded.tokenizer, WORDS, list(NEW.values()), ids, pieces, config)
    assert len(texts) == 4 and len({len(t.student) for t in texts}) > 1  # padding is exercised
    refiner = Refiner(loaded.model, ids, rows)
    pad = padding_id(loaded.tokenizer)
    targets = teacher_targets(refiner, texts, pad, batch_size=4)
    for text, target in zip(texts, targets, strict=True):
        loss, _, _ = batch_loss(refiner, [text], [target], pad, config)
        expected = slow_loss(loaded.model, loaded.tokenizer, text.student, ids[text.word], pieces[text.word],
                             config.after, text.output is not None, ids, config.output_weight)
        assert float(loss.detach()) == pytest.approx(expected, rel=1e-4, abs=1e-5)
    together, _, _ = batch_loss(refiner, texts, targets, pad, config)  # one padded batch: the mean of the four
    alone = [float(batch_loss(refiner, [t], [g], pad, config)[0]) for t, g in zip(texts, targets, strict=True)]
    kl_parts = [batch_loss(refiner, [t], [g], pad, config)[1] for t, g in zip(texts, targets, strict=True)]
    out_parts = [batch_loss(refiner, [t], [g], pad, config)[2] for t, g in zip(texts, targets, strict=True)]
    assert float(together) == pytest.approx(np.mean(kl_parts) + 0.3 * np.mean([o for o, t in zip(out_parts, texts,
                                            strict=True) if t.output]), rel=1e-4)
    assert len(alone) == 4


@pytest.mark.parametrize("family, spare", [("gpt2", 0), ("llama", 0), ("gpt2", 5)])
def test_refinement_lowers_the_loss_and_moves_only_the_new_rows(tiny_model_dir, family, spare):
    loaded, ids, rows, pieces = extended_tiny(tiny_model_dir(family), spare=spare)
    before = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
    config = RefineConfig(steps=40, lr=0.05, batch_size=4)
    texts = build_texts(loaded.tokenizer, WORDS, list(NEW.values()), ids, pieces, config)
    pad = padding_id(loaded.tokenizer)

    def loss_with(values):
        refiner = Refiner(loaded.model, ids, values)
        return float(batch_loss(refiner, texts, teacher_targets(refiner, texts, pad, 4), pad, config)[0])

    start = loss_with(rows)
    refined, summary = refine_rows(loaded.model, loaded.tokenizer, WORDS, list(NEW.values()), ids, pieces, rows,
                                   config)
    assert summary["texts"] == 4 and summary["words"] == 2 and len(summary["log"]) == 40
    assert loss_with(refined) < 0.5 * start
    size = get_table(loaded.model).shape[0]
    others = [i for i in range(size) if i not in ids]
    for name, p in loaded.model.named_parameters():
        if p.shape[0] == size:  # a table: every other row is untouched, the new ones moved
            torch.testing.assert_close(p.detach()[others], before[name][others], rtol=0, atol=0)
            assert not torch.equal(p.detach()[ids], before[name][ids])
        else:
            torch.testing.assert_close(p.detach(), before[name], rtol=0, atol=0)
    np.testing.assert_array_equal(get_table(loaded.model)[ids], refined)


def test_an_interrupted_refinement_resumes_to_the_same_rows(tiny_model_dir, tmp_path):
    config = RefineConfig(steps=8, lr=0.05, batch_size=2, save_every=3)
    loaded, ids, rows, pieces = extended_tiny(tiny_model_dir("gpt2"))
    whole, _ = refine_rows(loaded.model, loaded.tokenizer, WORDS, list(NEW.values()), ids, pieces, rows, config)

    class Stop(Exception):
        pass

    def stop_at_5(step):
        if step == 5:
            raise Stop

    state = tmp_path / "state.safetensors"
    loaded, ids, rows, pieces = extended_tiny(tiny_model_dir("gpt2"))
    with pytest.raises(Stop):
        refine_rows(loaded.model, loaded.tokenizer, WORDS, list(NEW.values()), ids, pieces, rows, config, state=state,
                    on_step=stop_at_5)
    loaded, ids, rows, pieces = extended_tiny(tiny_model_dir("gpt2"))  # a fresh process would start here
    resumed, summary = refine_rows(loaded.model, loaded.tokenizer, WORDS, list(NEW.values()), ids, pieces, rows,
                                   config, state=state)
    assert [e["step"] for e in summary["log"]] == list(range(1, 9))  # steps 1-3 from the state, 4-8 run again
    np.testing.assert_array_equal(resumed, whole)
    # a state from other settings is not resumed
    loaded, ids, rows, pieces = extended_tiny(tiny_model_dir("gpt2"), seed=1)
    _, other = refine_rows(loaded.model, loaded.tokenizer, WORDS, list(NEW.values()), ids, pieces, rows, config,
                           state=state)
    assert [e["step"] for e in other["log"]] == list(range(1, 9))


def test_extend_refine_writes_refined_rows(trained_run, tmp_path, capsys):  # noqa: F811 (the imported fixture)
    model, run = trained_run("gpt2")
    plain, refined = tmp_path / "plain", tmp_path / "refined"
    assert extend_cli(model, run, tmp_path, "--out", str(plain)) == 0
    capsys.readouterr()
    assert extend_cli(model, run, tmp_path, "--refine", "5", "--out", str(refined)) == 0
    assert "rows, refined 5 steps on their definitions" in capsys.readouterr().out
    summary = json.loads((refined / "defemb.json").read_text())
    assert summary["refine"]["steps"] == 5 and summary["refine"]["words"] == 2
    assert not refine_state_path(refined).exists()
    a, b = get_table(load_model(str(plain)).model), get_table(load_model(str(refined)).model)
    first = summary["first_id"]
    np.testing.assert_array_equal(a[:first], b[:first])
    assert np.abs(a[first:] - b[first:]).max() > 1e-3

    bert, bert_run = trained_run("bert")
    capsys.readouterr()
    assert extend_cli(bert, bert_run, tmp_path, "--refine", "5", "--out", str(tmp_path / "never")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--refine" in err[0] and "encoder" in err[0]
    assert not (tmp_path / "never").exists()
    assert extend_cli(model, run, tmp_path, "--refine", "-1", "--out", str(tmp_path / "never")) == 2
    assert "--refine must be" in capsys.readouterr().err
