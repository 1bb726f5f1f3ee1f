"""DefinitionEMB: masking per architecture, training, exact resume after kill -9, embedding."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from safetensors.torch import save_model

from defemb.cli import main
from defemb.config import TrainConfig
from defemb.errors import DefembError
from defemb.frequency import rank_tokens
from defemb.method.masking import Vocabulary, corrupt_encoder, definition_first, sentinel_seq2seq
from defemb.method.train import train
from defemb.models import get_table_module, load_model, tokenizer_kind, vocabulary_hash


def _records(corpus):
    return [json.loads(line) for line in (corpus / "train.jsonl").read_text().splitlines()]


def test_encoder_corruption_shares(tiny_model_dir, corpora):
    loaded = load_model(str(tiny_model_dir("bert")))
    vocab = Vocabulary.from_tokenizer(loaded.tokenizer)
    record = _records(corpora("bert"))[0]
    positions = [p for g in record["word_positions"] for p in g]
    outcome = {"mask": 0, "kept": 0, "other": 0}
    generator = torch.Generator().manual_seed(0)
    for _ in range(400):
        example = corrupt_encoder(record, vocab, generator)
        assert example.positions == positions and example.targets == [record["input_ids"][p] for p in positions]
        unchanged = [k for k in range(len(record["input_ids"])) if k not in positions]
        assert all(example.input_ids[k] == record["input_ids"][k] for k in unchanged)
        for p in positions:
            token = example.input_ids[p]
            outcome["mask" if token == vocab.mask_id else "kept" if token == record["input_ids"][p] else "other"] += 1
    total = sum(outcome.values())
    assert abs(outcome["mask"] / total - 0.5) < 0.06 and abs(outcome["kept"] / total - 0.25) < 0.06


def test_seq2seq_sentinels(tiny_model_dir, corpora):
    loaded = load_model(str(tiny_model_dir("t5")))
    vocab = Vocabulary.from_tokenizer(loaded.tokenizer, loaded.model.config.decoder_start_token_id)
    record = _records(corpora("t5"))[0]
    example = sentinel_seq2seq(record, vocab)
    groups = record["word_positions"]
    sentinels = [vocab.sentinels[k] for k in range(len(groups))]
    assert [t for t in example.input_ids if t in vocab.sentinels] == sentinels
    word_tokens = [record["input_ids"][p] for g in groups for p in g]
    assert example.targets == word_tokens
    labels = example.decoder_input_ids[1:] + [example.targets[-1]]
    for position, target in zip(example.positions, example.targets, strict=True):
        assert labels[position] == target  # the state at `position` (input: the previous label) predicts it
    assert example.decoder_input_ids[0] == loaded.model.config.decoder_start_token_id


def test_decoder_reads_definition_then_word(tiny_model_dir, corpora):
    loaded = load_model(str(tiny_model_dir("gpt2")))
    vocab = Vocabulary.from_tokenizer(loaded.tokenizer)
    record = _records(corpora("gpt2"))[0]
    example = definition_first(record, vocab)
    word = [record["input_ids"][p] for p in record["word_positions"][-1]]
    assert example.input_ids[-len(word):] == word and example.targets == word
    assert [example.input_ids[p + 1] for p in example.positions] == word
    context = example.input_ids[: -len(word)]
    assert len(context) == len(record["input_ids"]) - sum(len(g) for g in record["word_positions"])


SYNONYM_WORDS, SYNONYM_VALID, DISTRACTORS, PROMPTS_PER_WORD = 100, 25, 4, 4


def _synonym_setting(tiny_model_dir, family: str, folder: Path, rotate_rare: bool = False) -> tuple[Path, Path]:
    """A fresh tiny model and a corpus in which the definition predicts the rows, so a working method
    must beat the mean-row predictor. Each word is two tokens (A, B) defined by two synonym tokens (S, T)
    after a separator, then random distractors: ``A B : S T d d d d``; the model's table gets
    row(A) := row(S), row(B) := row(T). Every word has its own four tokens and validation words are not
    trained on, so only reading the definition (not memorising words) helps. Two targets per prompt make
    a state read at one wrong position pay: it can at best predict their average, 0.5 × the mean row.
    ``rotate_rare``: a target token of the rare band gets a fixed rotation of its synonym's row instead,
    row(A) := Q · row(S); the body cannot see the masked word's band, so only a head told the band can fit both."""
    model_dir = tiny_model_dir(family, fresh=True)
    loaded = load_model(str(model_dir))
    tokenizer = loaded.tokenizer
    ids = sorted(set(range(len(tokenizer))) - set(tokenizer.all_special_ids))
    rng = random.Random(0)
    rng.shuffle(ids)
    separator, words = ids[0], [ids[1 + 4 * k : 5 + 4 * k] for k in range(SYNONYM_WORDS)]  # [A, B, S, T]
    table = get_table_module(loaded.model, "input").weight
    rotation = torch.eye(table.shape[1])
    if rotate_rare:
        draw = torch.randn(table.shape[1], table.shape[1], generator=torch.Generator().manual_seed(1))
        rotation = torch.linalg.qr(draw)[0]
    bands = rank_tokens(tokenizer, table.shape[0], None, tokenizer_kind(tokenizer)).band_of(table.shape[0])
    with torch.no_grad():
        for a, b, s, t in words:
            for target, synonym in ((a, s), (b, t)):
                table[target] = rotation @ table[synonym] if bands[target] == "rare" else table[synonym]
    loaded.model.save_pretrained(model_dir)
    probe, plain = tokenizer("a")["input_ids"], tokenizer("a", add_special_tokens=False)["input_ids"]
    start = probe.index(plain[0])
    prefix, suffix = probe[:start], probe[start + len(plain) :]  # the tokenizer's own special tokens
    synonyms = [token for word in words for token in word[2:]]
    corpus = folder / "corpus"
    corpus.mkdir()
    for split, chosen in (("train", words[SYNONYM_VALID:]), ("valid", words[:SYNONYM_VALID])):
        records = [{"word": f"w{k}", "location": f"{split}:{k}", "word_positions": [[len(prefix), len(prefix) + 1]],
                    "input_ids": [*prefix, a, b, separator, s, t, *rng.sample(synonyms, DISTRACTORS), *suffix]}
                   for k, (a, b, s, t) in enumerate(chosen) for _ in range(PROMPTS_PER_WORD)]
        (corpus / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (corpus / "config.json").write_text(json.dumps({"vocab_hash": vocabulary_hash(tokenizer)}), encoding="utf-8")
    return model_dir, corpus


def _train_on_synonyms(tiny_model_dir, family: str, folder: Path, rotate_rare: bool = False,
                       **settings) -> tuple[dict, list[dict]]:
    model, corpus = _synonym_setting(tiny_model_dir, family, folder, rotate_rare)
    # One W unless asked: these tests are about the body learning to read the definition. On 75 training words
    # a band head's three corrections fit noise (0.59 x the mean row after 200 steps against one W's 0.32); on
    # real corpora (10^5 positions) the band head wins (docs/results.md).
    settings.setdefault("head", "single")
    # rows are ~0.1 long: W at 10x the body's rate overshoots them, so it starts from the ridge fit and moves slowly
    settings = {"steps": 200, "eval_every": 50, **settings}
    config = TrainConfig(model=str(model), corpus=str(corpus), lr=1e-2, head_lr_scale=0.1, tokens=1024,
                         save_every=200, **settings)
    summary = train(config, folder / "run")
    return summary, [json.loads(line) for line in (folder / "run" / "metrics.jsonl").read_text().splitlines()]


# Seq2seq (t5) and llama do not learn this copy within a test's budget (t5: 0.76 × the mean row after 500
# steps; llama memorises its training words and gets worse on the held-out ones), so they are left out.
@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_training_beats_the_mean_row(tiny_model_dir, tmp_path, one_thread, family):
    summary, metrics = _train_on_synonyms(tiny_model_dir, family, tmp_path)
    assert {"valid_mse_frequent", "valid_mse_rare", "mean_row_mse_rare", "valid_token_mse_rare"} <= set(metrics[0])
    _check_baselines(tmp_path, metrics[0])
    # intact ~0.26 × the mean row; frozen body 0.97 (bert) / 1.13 (gpt2), state read at position 0 0.80 / 1.01,
    # gpt2 without the definition 1.26: only a body that learns to read the definition at the word gets below 0.5
    assert summary["steps"] == 200 and summary["best_valid_mse"] < 0.5 * metrics[0]["mean_row_mse"]
    for name in ("model/config.json", "head.safetensors", "checkpoint/state.json", "config.json", "summary.json"):
        assert (tmp_path / "run" / name).exists()


def _check_baselines(folder: Path, start: dict) -> None:
    """The start's trivial predictors, recomputed with loops: the mean row of all rows and of the token's band,
    per position and per token (each token once)."""
    loaded = load_model(str(folder / "run" / "model"))  # its token table is the frozen pretrained one
    table = get_table_module(loaded.model, "input").weight.detach().double().numpy()
    ranking = rank_tokens(loaded.tokenizer, table.shape[0], None, tokenizer_kind(loaded.tokenizer))
    bands = ranking.band_of(table.shape[0])
    valid = [json.loads(line) for line in (folder / "corpus" / "valid.jsonl").read_text().splitlines()]
    ids = [r["input_ids"][p] for r in valid for g in r["word_positions"] for p in g]
    for band in ("frequent", "medium", "rare"):
        mean = table[bands == band].mean(axis=0)
        errors = {t: float(((table[t] - mean) ** 2).sum()) for t in ids if bands[t] == band}
        if not errors:
            continue
        positions = [errors[t] for t in ids if bands[t] == band]
        assert start[f"band_mean_mse_{band}"] == pytest.approx(np.mean(positions), rel=1e-4)
        assert start[f"band_mean_token_mse_{band}"] == pytest.approx(np.mean(list(errors.values())), rel=1e-4)
    overall = table.mean(axis=0)
    assert start["mean_row_mse"] == pytest.approx(np.mean([((table[t] - overall) ** 2).sum() for t in ids]), rel=1e-4)


def test_a_band_head_fits_what_one_map_cannot(tiny_model_dir, tmp_path, one_thread):
    """Rare targets are a rotation of their synonyms' rows (`_synonym_setting`): one W cannot serve both kinds,
    a band head can, in validation and in the rows `embed` writes, which must read each token by its own band's
    map (read by another map, or by none, they land where one W does)."""
    from defemb.method.embed import embed

    runs, rare_errors = {}, {}
    for head in ("single", "band"):
        folder = tmp_path / head
        folder.mkdir()
        summary, metrics = _train_on_synonyms(tiny_model_dir, "bert", folder, rotate_rare=True, head=head)
        best = next(m for m in metrics if m["step"] == summary["best_step"] and "event" not in m)
        runs[head] = best["valid_mse_rare"] / metrics[0]["mean_row_mse_rare"]
        out = folder / "rows.safetensors"
        embed(folder / "run", folder / "corpus", out)
        rows = load_file(out)
        loaded = load_model(str(folder / "run" / "model"))  # its token table is the frozen pretrained one
        table = get_table_module(loaded.model, "input").weight.detach().numpy()
        bands = rank_tokens(loaded.tokenizer, table.shape[0], None, tokenizer_kind(loaded.tokenizer)).band_of(
            table.shape[0])
        valid = [json.loads(line) for line in (folder / "corpus" / "valid.jsonl").read_text().splitlines()]
        rare = sorted({r["input_ids"][p] for r in valid for g in r["word_positions"] for p in g} &
                      set(np.flatnonzero(bands == "rare").tolist()))
        at = {int(t): k for k, t in enumerate(rows["token_ids"])}
        rare_errors[head] = float(np.mean([((rows["embeddings"][at[t]] - table[t]) ** 2).sum() for t in rare]))
    # validation, rare band: single 1.55 x its mean row, band 0.91; rows `embed` writes: 0.0166 vs 0.0097 (0.0194
    # when `load_run` drops the map index; 1.55 in validation when the forward ignores the corrections)
    assert runs["band"] < 0.7 * runs["single"]
    assert rare_errors["band"] < 0.7 * rare_errors["single"]


def test_bf16_autocast_trains_in_bfloat16_and_keeps_float32_weights(tiny_model_dir, tmp_path, one_thread,
                                                                    linear_dtypes):
    summary, metrics = _train_on_synonyms(tiny_model_dir, "bert", tmp_path, bf16=True)
    assert summary["best_valid_mse"] < 0.5 * metrics[0]["mean_row_mse"]
    assert linear_dtypes == {torch.bfloat16, torch.float32}  # training matmuls in bf16, validation in float32
    head = load_file(tmp_path / "run" / "head.safetensors")["weight"]
    assert str(head.dtype) == "float32"


@pytest.mark.parametrize("bf16", [False, True])
def test_the_warm_start_fits_w_to_the_states_of_training_precision(tiny_model_dir, tmp_path, one_thread,
                                                                   linear_dtypes, bf16):
    """W is fitted to the hidden states training's forward will produce: bfloat16 ones with --bf16."""
    from defemb.method.train import Trainer

    model, corpus = _synonym_setting(tiny_model_dir, "bert", tmp_path)
    trainer = Trainer(TrainConfig(model=str(model), corpus=str(corpus), steps=1, bf16=bf16), tmp_path / "run")
    linear_dtypes.clear()
    trainer.warm_start_head()
    assert (torch.bfloat16 in linear_dtypes) is bf16


def test_the_warm_start_reads_ridge_examples_prompts(tiny_model_dir, tmp_path, one_thread, monkeypatch):
    """--ridge-examples bounds the prompts the warm start passes through the model (a decoder pays a pass
    of 30 layers for each); the sample is drawn across the corpus, not its first records."""
    from defemb.method.train import Trainer

    model, corpus = _synonym_setting(tiny_model_dir, "bert", tmp_path)
    trainer = Trainer(TrainConfig(model=str(model), corpus=str(corpus), steps=1, ridge_examples=5), tmp_path / "run")
    seen = []
    examples = trainer._examples
    monkeypatch.setattr(trainer, "_examples", lambda records, *rest: seen.extend(records) or examples(records, *rest))
    trainer.warm_start_head()
    assert len(seen) == 5 < len(trainer.train_records) and seen != trainer.train_records[:5]


def test_token_weights_match_a_slow_count():
    from defemb.method.train import token_weights

    records = [{"input_ids": [0, 5, 6, 5, 9], "word_positions": [[1], [3]]},  # 9 is in the text, not a target
               {"input_ids": [0, 6, 7], "word_positions": [[1, 2]]}, {"input_ids": [0, 5], "word_positions": [[1]]}]
    targets = [5, 5, 6, 7, 5]
    for gamma in (0.0, 0.5, 1.0):
        weights = token_weights(records, 10, gamma).numpy()
        raw = {t: targets.count(t) ** -gamma for t in set(targets)}
        scale = sum(raw[t] for t in targets) / len(targets)
        for t in range(10):
            assert weights[t] == pytest.approx(raw[t] / scale if t in raw else 1.0)
        assert np.mean([weights[t] for t in targets]) == pytest.approx(1.0)  # positions' mean weight 1
    assert token_weights(records, 10, 1.0)[7] == pytest.approx(3 * token_weights(records, 10, 1.0)[5])


@pytest.mark.parametrize("gamma", [0.0, 1.0])
def test_the_loss_weighs_each_position_by_its_token(tiny_model_dir, tmp_path, one_thread, gamma):
    """`--token-weight γ`: Eq. 5's loss (per prompt the mean over its positions, summed over prompts) with each
    position's squared error times its token's weight, recomputed with loops on one batch."""
    from defemb.method.train import Trainer, token_weights

    model, corpus = _synonym_setting(tiny_model_dir, "bert", tmp_path)
    lines = (corpus / "train.jsonl").read_text().splitlines(keepends=True)
    (corpus / "train.jsonl").write_text("".join(lines[:4] * 3 + lines))  # 4 prompts for some words, 1 for most
    trainer = Trainer(TrainConfig(model=str(model), corpus=str(corpus), steps=1, token_weight=gamma), tmp_path / "run")
    batch = trainer._examples(trainer.train_records[:16], torch.Generator().manual_seed(0))
    predictions = torch.randn(len(batch.targets), trainer.targets.shape[1], generator=torch.Generator().manual_seed(1))
    loss, _ = trainer._loss(predictions, batch)
    weights = token_weights(trainer.train_records, trainer.targets.shape[0], gamma)
    expected = 0.0
    for row in range(batch.input_ids.shape[0]):
        at = [i for i in range(len(batch.targets)) if int(batch.rows[i]) == row]
        errors = [float(weights[batch.targets[i]]) * float(((predictions[i] - trainer.targets[batch.targets[i]]) ** 2
                                                             ).sum()) for i in at]
        expected += sum(errors) / max(len(errors), 1)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert bool(weights.max() > 3 * weights.min()) is (gamma == 1.0)  # repeated words weigh a quarter


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(tiny_model_dir, corpora, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(tiny_model_dir("bert")), "--corpus", str(corpora("bert")), "--out", str(out),
                 "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err and not out.exists()
    assert main(["train", str(tiny_model_dir("bert")), "--corpus", str(corpora("bert")), "--out", str(out),
                 "--device", "tpu"]) == 2


def test_warm_start_lands_at_the_mean_row_on_masked_positions(tiny_model_dir, tmp_path, one_thread):
    """The ridge fit on the untrained body's states with the word masked: no linear read of a random tiny body
    beats the mean row on held-out words (1.02 ×; it looked like 0.97 × only while validation left the word in
    view at a quarter of the positions), but it must land there, not at a random head's error. That the warm
    start is what training builds on is held by `test_training_beats_the_mean_row`, which fails without it."""
    model, corpus = _synonym_setting(tiny_model_dir, "bert", tmp_path)
    train(TrainConfig(model=str(model), corpus=str(corpus), steps=1, eval_every=1), tmp_path / "run")
    start, warm = (json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[:2])
    assert start["event"] == "start" and warm["event"] == "warm_start"
    assert warm["valid_mse"] < 1.05 * start["mean_row_mse"] and start["valid_mse"] > 10 * warm["valid_mse"]


def _run_cli(args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "defemb.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_kill_9_and_resume_gives_the_same_weights(tiny_model_dir, corpora, tmp_path):
    args = ["train", str(tiny_model_dir("bert")), "--corpus", str(corpora("bert")), "--steps", "120",
            "--save-every", "10", "--eval-every", "40", "--tokens", "512", "--seed", "3"]
    reference = tmp_path / "reference"
    assert main([*args, "--out", str(reference)]) == 0

    run = tmp_path / "run"
    # The same number of threads as the reference run here: float sums split over other thread counts differ.
    process = _run_cli([*args, "--out", str(run)], env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    state = tmp_path / "run.partial" / "checkpoint" / "state.json"  # the run lives there until complete
    deadline = time.time() + 120
    while time.time() < deadline:
        if state.exists() and json.loads(state.read_text())["step"] >= 30:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert json.loads(state.read_text())["step"] < 120 and not run.exists()
    assert main(["train", "--resume", str(run)]) == 0
    assert not state.exists()
    for name in ("head.safetensors", "model/model.safetensors"):
        expected, resumed = load_file(reference / name), load_file(run / name)
        assert expected.keys() == resumed.keys()
        for key in expected:
            np.testing.assert_array_equal(expected[key], resumed[key], err_msg=key)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [json.loads(line)["step"] for line in (reference / "metrics.jsonl").read_text().splitlines()]


def test_bad_training_input(tiny_model_dir, corpora, tmp_path, capsys):
    bert, gpt2 = str(tiny_model_dir("bert")), str(tiny_model_dir("gpt2"))
    out = tmp_path / "run"
    assert main(["train", bert, "--corpus", str(corpora("gpt2")), "--out", str(out)]) == 2
    assert "another tokenizer" in capsys.readouterr().err and not out.exists()
    assert main(["train", gpt2, "--corpus", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert main(["train", bert, "--corpus", str(corpora("bert")), "--out", str(out), "--preset", "huge"]) == 2
    for bad, message in ((["--contrast", "-1"], "--contrast must be"), (["--contrast", "nan"], "--contrast must be"),
                         (["--contrast", "1", "--objective", "lm"], "does not apply")):
        assert main(["train", bert, "--corpus", str(corpora("bert")), "--out", str(out), *bad]) == 2
        assert message in capsys.readouterr().err
    assert not out.exists()


DUMPING_TRAIN = """
import json, sys
from safetensors.torch import save_model
from defemb.config import TrainConfig
from defemb.errors import DefembError
from defemb.method import train as T

def dump(self, early_stop, finish=T.Trainer.finish):  # every rank writes the weights it ends with
    save_model(self.model, f"{sys.argv[1]}.rank{self.rank}.safetensors")
    return finish(self, early_stop)

T.Trainer.finish = dump
T.train(TrainConfig(**json.loads(sys.argv[2])), sys.argv[1])
"""


def _torchrun(tmp_path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Two CPU processes (gloo) under torchrun; on timeout torchrun is stopped (SIGTERM: it stops its
    workers, which run in sessions of their own), so a rank that hangs fails the test instead of spinning on."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(port), *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=tmp_path)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.terminate()
        process.communicate()
        pytest.fail(f"torchrun did not finish within {timeout} s")
    return subprocess.CompletedProcess(command, process.returncode, out, err)


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tiny_model_dir, corpora, tmp_path,
                                                                        monkeypatch):
    """Real multi-process training: torchrun, two CPU processes, gloo. Llama (no dropout) and the
    decoder strategy on one marked form per prompt (no random masking, no form to draw) make every draw
    the same in both set-ups, so rank r's batch at each step is the one a single process meets as its
    r-th accumulated batch."""
    model = tiny_model_dir("llama")
    corpus = tmp_path / "corpus"
    shutil.copytree(corpora("llama"), corpus)
    for split in ("train", "valid"):
        path = corpus / f"{split}.jsonl"
        records = [json.loads(line) for line in path.read_text().splitlines()]
        for record in records:
            record["word_positions"] = record["word_positions"][-1:]
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    settings = dict(model=str(model), corpus=str(corpus), steps=2, tokens=256, lr=1e-3, warm_start=False,
                    eval_every=2, save_every=2)
    script = tmp_path / "dumping_train.py"
    script.write_text(DUMPING_TRAIN, encoding="utf-8")
    done = _torchrun(tmp_path, str(script), str(tmp_path / "ddp"), json.dumps(settings))
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [json.loads(line)["step"] for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 2] and json.loads((tmp_path / "ddp" / "summary.json").read_text())["steps"] == 2

    from defemb.method import train as train_module

    finish = train_module.Trainer.finish

    def dump(self, early_stop):
        save_model(self.model, str(tmp_path / "single.safetensors"))
        return finish(self, early_stop)

    monkeypatch.setattr(train_module.Trainer, "finish", dump)
    train(TrainConfig(**settings, grad_accum=2), tmp_path / "single")
    rank0, rank1 = (load_file(tmp_path / f"ddp.rank{r}.safetensors") for r in (0, 1))
    single = load_file(tmp_path / "single.safetensors")
    before = load_file(model / "model.safetensors")
    moved = [k for k in rank0 if k.removeprefix("body.") in before
             and not np.array_equal(rank0[k], before[k.removeprefix("body.")])]
    assert moved, "training changed no weight of the body: the comparison below would prove nothing"
    for key in rank0:
        np.testing.assert_array_equal(rank0[key], rank1[key], err_msg=key)  # DDP keeps the replicas identical
        np.testing.assert_allclose(rank0[key], single[key], rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.slow
def test_ddp_with_fewer_batches_than_processes_stops_with_an_error(tiny_model_dir, corpora, tmp_path):
    corpus = tmp_path / "one-batch"
    shutil.copytree(corpora("bert"), corpus)
    lines = (corpus / "train.jsonl").read_text().splitlines()
    (corpus / "train.jsonl").write_text(lines[0] + "\n", encoding="utf-8")
    done = _torchrun(tmp_path, "-m", "defemb.cli", "train", str(tiny_model_dir("bert")), "--corpus", str(corpus),
                     "--out", str(tmp_path / "run"), "--steps", "2", timeout=180)
    assert done.returncode != 0 and "makes 1 batch(es) of --tokens 4096 per epoch, fewer than the 2 processes" \
        in done.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_empty_corpus_is_refused(tiny_model_dir, corpora, tmp_path, capsys):
    corpus = tmp_path / "empty"
    shutil.copytree(corpora("bert"), corpus)
    (corpus / "train.jsonl").write_text("", encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", str(tiny_model_dir("bert")), "--corpus", str(corpus), "--out", str(out)]) == 2
    assert "no training records" in capsys.readouterr().err and not out.exists()


def test_model_without_a_token_table_is_refused(tiny_model_dir, tmp_path, capsys):
    from transformers import AutoTokenizer, ViTConfig, ViTModel

    vit = tmp_path / "vit"
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=8, patch_size=4)).save_pretrained(vit)
    AutoTokenizer.from_pretrained(tiny_model_dir("bert")).save_pretrained(vit)  # a tokenizer is not enough
    out = tmp_path / "run"
    assert main(["analyze", str(vit), "--ranking", "index", "--out", str(out)]) == 2
    assert "token-embedding table" in capsys.readouterr().err and not out.exists()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_model_dir, corpora, tmp_path, monkeypatch, capsys):
    from defemb.method import train as train_module

    update = train_module.Trainer._update

    def poisoned(self, model, plan):
        squared = update(self, model, plan)
        return squared * float("nan") if self.step == 3 else squared  # the 4th step goes bad

    monkeypatch.setattr(train_module.Trainer, "_update", poisoned)
    out = tmp_path / "run"
    args = ["train", str(tiny_model_dir("bert")), "--corpus", str(corpora("bert")), "--out", str(out),
            "--steps", "6", "--save-every", "2", "--eval-every", "2", "--tokens", "256", "--no-warm-start"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "NaN/inf at step 4" in err and "last good checkpoint" in err
    state = json.loads((tmp_path / "run.partial" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 2 and not out.exists()


def test_the_contrast_term_teaches_which_row(tiny_model_dir, tmp_path, one_thread):
    """`--contrast`: the prediction must pick its own row out of the table. The tiny rows are ~0.1 long, so squared
    error moves their directions slowly; the contrast term does not depend on length. After 60 steps, on held-out
    words: validation's contrast loss and the share of words whose own row is among their 10 nearest."""
    last = {}
    for beta in (0.0, 1.0):
        folder = tmp_path / f"contrast{beta}"
        folder.mkdir()
        _, metrics = _train_on_synonyms(tiny_model_dir, "bert", folder, contrast=beta, steps=60, eval_every=60)
        last[beta] = [m for m in metrics if "event" not in m][-1]
    # measured: contrast 8.13 without the term, 4.39 with it (12.97 at the warm start); top-10 share 0.20 vs 0.51
    assert last[1.0]["valid_contrast"] < 0.7 * last[0.0]["valid_contrast"]
    assert last[1.0]["valid_top10"] > last[0.0]["valid_top10"] + 0.15


@pytest.mark.parametrize("gamma", [-0.5, 1.5, float("nan")])
def test_token_weight_outside_0_1_is_refused(gamma):
    with pytest.raises(DefembError, match="--token-weight must be in"):
        TrainConfig(model="m", corpus="c", token_weight=gamma)
