"""`defemb evaluate summarization`: readers, ROUGE, rare subset, warm start, end-to-end runs on tiny models."""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from defemb.cli import main
from defemb.errors import DefembError
from defemb.evaluation.data import SHARED_DATA
from defemb.evaluation.records import read_records
from defemb.evaluation.summ_data import (
    CNNDM_FILES,
    XSUM_FILE,
    collate,
    encode,
    load_task,
    rare_subset,
    read_examples,
    rouge_per_example,
)
from defemb.evaluation.summ_model import default_prefix, load_seq2seq, model_route
from defemb.evaluation.summarization import SummarizationConfig, evaluate_summarization

_WORDS = ("Alice Bob Carol Maria John Paris London Monday Friday the a dog cat house book car city river "
          "train saw found bought read wrote big small old new red green happy in on with and 12 102 2024").split()


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    """16 training and 8 test documents whose summary is the document's first six words (a copy task)."""
    rng = random.Random(0)
    rows = []
    for i in range(24):
        words = [rng.choice(_WORDS) for _ in range(24)]
        rows.append({"document": " ".join(words) + ".", "summary": " ".join(words[:6]), "id": f"doc{i}"})
    folder = tmp_path_factory.mktemp("summ-task")
    _write_jsonl(folder / "train.jsonl", rows[:16])
    _write_jsonl(folder / "test.jsonl", rows[16:])
    return folder


def _config(task_dir: Path, models: list[str], **overrides) -> SummarizationConfig:
    settings = dict(task=f"jsonl:{task_dir}", models=models, epochs=1, lr=1e-3, batch_tokens=512, beams=2,
                    max_source_length=48, max_target_length=10, min_length=1, device="cpu")
    settings.update(overrides)
    return SummarizationConfig(**settings)


# ------------------------------------------------------------------------------------------------ readers


def test_readers_keep_fields_ids_and_multiline_csv_records(tmp_path):
    _write_jsonl(tmp_path / "a.jsonl", [{"document": " One. ", "summary": "1", "id": 7}, {"document": "Two.",
                                                                                          "summary": "2"}])
    rows = read_examples(tmp_path / "a.jsonl")
    assert [(r.document, r.summary, r.id) for r in rows] == [("One.", "1", "7"), ("Two.", "2", "a:2")]
    (tmp_path / "b.csv").write_text('article,highlights,id\n"first\nline",sum one,x1\nsecond,"two\nlines",x2\n',
                                    encoding="utf-8")
    rows = read_examples(tmp_path / "b.csv")
    assert [(r.document, r.summary, r.id) for r in rows] == [("first\nline", "sum one", "x1"),
                                                             ("second", "two\nlines", "x2")]


@pytest.mark.parametrize(("name", "text", "where", "what"), [
    ("bad.jsonl", '{"document": "d", "summary": "s"}\n\n{"document": "d", "summary": \n', "bad.jsonl:3", "JSON"),
    ("missing.jsonl", '{"document": "d", "summary": "s"}\n{"document": "d"}\n', "missing.jsonl:2", "summary"),
    ("empty.jsonl", '{"document": "d", "summary": "s"}\n{"document": "  ", "summary": "s"}\n', "empty.jsonl:2",
     "empty document"),
    ("gap.csv", 'article,highlights,id\n"multi\nline\nrecord",s,1\ndoc,,2\n', "gap.csv:5", "empty summary"),
    ("cols.csv", "text,label\nx,y\n", "cols.csv:1", "header"),
    ("wide.csv", "x" * 10_000_000 + "\n", "wide.csv:1", "header 'xxxx"),
    ("binary.jsonl", "\0" * 100, "binary.jsonl", "looks binary"),
])
def test_bad_input_errors_name_file_and_line(tmp_path, name, text, where, what):
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(DefembError) as err:
        read_examples(tmp_path / name)
    assert where in str(err.value) and what in str(err.value) and len(str(err.value)) < 400


def test_jsonl_task_folder_file_and_train_from_test(task_dir, tmp_path):
    splits = load_task(f"jsonl:{task_dir}")
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (16, 0, 8)
    only_test = load_task(f"jsonl:{task_dir / 'test.jsonl'}")
    assert (len(only_test.train), len(only_test.test)) == (0, 8)
    split = load_task(f"jsonl:{task_dir / 'test.jsonl'}", train_from_test=3)
    assert (len(split.train), len(split.test)) == (3, 5)
    assert not {x.id for x in split.train} & {x.id for x in split.test}
    assert split.train == load_task(f"jsonl:{task_dir / 'test.jsonl'}", train_from_test=3).train  # fixed split
    with pytest.raises(DefembError, match="--train-from-test"):
        load_task(f"jsonl:{task_dir}", train_from_test=3)  # the folder already has a training split
    with pytest.raises(DefembError, match="no training set"):
        evaluate_summarization(_config(task_dir / "test.jsonl", ["m=/nonexistent"]), tmp_path / "out")


_CNNDM = SHARED_DATA / "cnn_dailymail"
_XSUM = SHARED_DATA / "xsum" / XSUM_FILE


@pytest.mark.skipif(not all((_CNNDM / f).is_file() for f in CNNDM_FILES.values()), reason="shared CNN/DM absent")
def test_shared_cnndm_trains_on_validation_and_tests_on_test():
    splits = load_task("cnndm", data=str(_CNNDM))
    assert (len(splits.train), len(splits.test)) == (500, 500)
    assert splits.sources["train"].endswith(CNNDM_FILES["train"])
    assert splits.test[0].id.startswith("f001ec5c")  # the HF test order (MANIFEST)
    assert "\n" in splits.test[0].summary  # highlights keep one sentence per line (ROUGE-Lsum)


@pytest.mark.skipif(not _XSUM.is_file(), reason="shared XSum sample absent")
def test_shared_xsum_has_no_train_split_unless_asked(tmp_path):
    splits = load_task("xsum", data=str(_XSUM.parent))
    assert (len(splits.train), len(splits.test)) == (0, 1000)
    with pytest.raises(DefembError, match="--train-from-test N"):
        evaluate_summarization(SummarizationConfig(task="xsum", models=["x=/nonexistent"], data=str(_XSUM.parent)),
                               tmp_path / "out")
    split = load_task("xsum", data=str(_XSUM.parent), train_from_test=200)
    assert (len(split.train), len(split.test)) == (200, 800)


# -------------------------------------------------------------------------------------------------- ROUGE


def test_rouge_hand_computed_cases():
    scores = rouge_per_example(["the cat sat", "alpha beta", "the cat sat"],
                               ["the cat sat", "gamma delta", "the cat ran"])
    for name in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        assert scores[name][:2] == [1.0, 0.0]
    # 2 of 3 unigrams (P = R = 2/3), 1 of 2 bigrams, LCS "the cat" = 2 of 3
    assert scores["rouge1"][2] == pytest.approx(2 / 3)
    assert scores["rouge2"][2] == pytest.approx(0.5)
    assert scores["rougeL"][2] == pytest.approx(2 / 3)


def test_rouge_lsum_matches_sentences_not_order():
    reference = "The dog ran home.\nThe cat slept."
    swapped = rouge_per_example(["The cat slept. The dog ran home."], [reference])
    assert swapped["rougeLsum"][0] == pytest.approx(1.0)  # each sentence's LCS is whole
    assert swapped["rougeL"][0] < 1.0  # one LCS over the whole text cannot cover both orders


# ---------------------------------------------------------------------------------------------- rare subset


def test_rare_subset_picks_exactly_the_summaries_at_or_above_the_threshold():
    vocab: dict[str, int] = {}

    def encode_words(texts):
        return [[vocab.setdefault(w, len(vocab)) for w in t.split()] for t in texts]

    encode_words(["rare1 rare2"])  # ids 0 and 1 are the rare band
    summaries = [
        " ".join(["rare1"] + ["w"] * 19),  # 1/20 = exactly 5 %: kept
        " ".join(["rare1"] + ["w"] * 20),  # 1/21 < 5 %: dropped
        "w w w",  # none
        "rare2 rare1 x y z",  # 40 %: kept
        " ".join(["rare2"] * 2 + ["new"] * 18),  # 10 %, but 'new' never seen in training
    ]
    assert rare_subset(summaries, encode_words, {0, 1}, 0.05) == [0, 3, 4]
    assert rare_subset(summaries, encode_words, {0, 1}, 0.5) == []
    seen = {vocab[w] for w in ("rare1", "rare2", "w", "x", "y", "z")}
    assert rare_subset(summaries, encode_words, {0, 1}, 0.05, seen_ids=seen) == [0, 3]


# ---------------------------------------------------------------------------------------- config and model


def test_config_defaults_by_task_validation_and_round_trip(task_dir):
    cnndm = SummarizationConfig(task="cnndm", models=["minilm"])
    assert (cnndm.beams, cnndm.length_penalty, cnndm.primary) == (4, 2.0, "test/rouge1")  # paper Table 15
    xsum = SummarizationConfig(task="xsum", models=["minilm"], rare_subset="only")
    assert (xsum.beams, xsum.length_penalty, xsum.primary) == (6, 1.0, "rare/rouge1")
    assert SummarizationConfig(**json.loads(json.dumps(cnndm.to_dict()))) == cnndm
    for bad in ({"task": "cnn"}, {"beams": 0}, {"min_length": 20, "max_target_length": 10}, {"lr": 0.0},
                {"rare_subset": "yes"}, {"ranking": "zipf"}, {"models": ["a=x", "a=y"]}, {"warmup_ratio": 1.0},
                {"train_limit": 0}, {"epochs": -1}):
        with pytest.raises(DefembError):
            SummarizationConfig(**{"task": "cnndm", "models": ["minilm"], **bad})


def test_model_routes_and_prefix(tiny_model_dir):
    from transformers import AutoConfig

    routes = {f: model_route(AutoConfig.from_pretrained(tiny_model_dir(f))) for f in ("bart", "t5", "bert")}
    assert routes == {"bart": "seq2seq", "t5": "seq2seq", "bert": "warm-start"}
    with pytest.raises(DefembError, match="decoder-only"):
        model_route(AutoConfig.from_pretrained(tiny_model_dir("gpt2")))
    assert (default_prefix("t5"), default_prefix("bart"), default_prefix("bert")) == ("summarize: ", "", "")


def test_warm_start_ties_encoder_and_decoder_but_not_cross_attention(tiny_model_dir, task_dir):
    cfg = _config(task_dir, [str(tiny_model_dir("bert"))])
    model, tokenizer, facts = load_seq2seq(str(tiny_model_dir("bert")), cfg)
    assert facts["route"] == "warm-start" and facts["tied_parameters"] > 0
    enc, dec = model.encoder, model.decoder
    enc_layer, dec_layer = enc.encoder.layer[0], dec.bert.encoder.layer[0]
    assert dec_layer.attention.self.query.weight is enc_layer.attention.self.query.weight
    assert dec.bert.embeddings.word_embeddings.weight is enc.embeddings.word_embeddings.weight
    assert dec.get_output_embeddings().weight is enc.embeddings.word_embeddings.weight  # tied LM head
    assert not any(p is q for p in dec_layer.crossattention.parameters() for q in enc.parameters())
    assert dec_layer.attention.self.is_causal and not enc_layer.attention.self.is_causal
    generation = model.generation_config
    assert (generation.decoder_start_token_id, generation.eos_token_id, generation.pad_token_id) == (
        tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)
    # a target's [CLS] is the decoder's start token, so it is not also a label
    data = encode(load_task(f"jsonl:{task_dir}").train[:2], tokenizer, "", 48, 10, tokenizer.cls_token_id,
                  tokenizer.sep_token_id)
    assert all(t[0] != tokenizer.cls_token_id and t[-1] == tokenizer.sep_token_id for t in data.targets)
    batch = collate(data, [0, 1], tokenizer.pad_token_id, "cpu")
    assert (batch["labels"] == -100).sum() == abs(len(data.targets[0]) - len(data.targets[1]))
    assert batch["attention_mask"].sum() == sum(map(len, data.sources))


def test_targets_drop_the_start_token_and_always_end_with_eos(tiny_model_dir, task_dir):
    """T5Gemma's tokenizer adds <bos> and no <eos>: labels must not repeat the start, and must teach stopping."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir("t5gemma"))
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    assert tokenizer(text_target="the dog")["input_ids"][0] == bos  # what the rule is for
    data = encode(load_task(f"jsonl:{task_dir}").train[:3], tokenizer, "", 48, 5, bos, eos)
    assert all(len(t) <= 5 and t[0] != bos and t[-1] == eos and t.count(eos) == 1 for t in data.targets)


# --------------------------------------------------------------------------------------------- end to end


def test_bart_and_t5_end_to_end_records_and_predictions(tiny_model_dir, task_dir, tmp_path):
    models = [f"bart={tiny_model_dir('bart')}", f"t5={tiny_model_dir('t5')}"]
    records = evaluate_summarization(_config(task_dir, models), tmp_path / "out")
    assert [(r.label, r.status) for r in records] == [("bart", "ok"), ("t5", "ok")]
    for record in records:
        assert record.primary == "test/rouge1"
        assert set(record.metrics) == {f"test/{n}" for n in ("rouge1", "rouge2", "rougeL", "rougeLsum")}
        for name, values in record.per_example.items():
            assert len(values) == 8 and record.metrics[name] == pytest.approx(np.mean(values))
        folder = tmp_path / "out" / record.label / "seed-0"
        lines = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
        assert [x["id"] for x in lines] == [f"doc{i}" for i in range(16, 24)]
        assert [x["rouge1"] for x in lines] == pytest.approx(record.per_example["test/rouge1"], abs=1e-5)
        assert json.loads((folder / "training.json").read_text())["optimizer_steps"] >= 1
    assert records[1].config["run"]["prefix"] == "summarize: "
    assert [r.label for r in read_records(tmp_path / "out")] == ["bart", "t5"]


def test_warm_started_bert_with_rare_subset(tiny_model_dir, task_dir, tmp_path):
    cfg = _config(task_dir, [f"bert={tiny_model_dir('bert')}"], rare_subset="add", rare_threshold=0.1,
                  ranking="index")
    (record,) = evaluate_summarization(cfg, tmp_path / "out")
    assert record.status == "ok", record.error
    rare = json.loads((tmp_path / "out" / "bert" / "seed-0" / "rare_subset.json").read_text())
    assert record.config["run"]["rare_subset"]["size"] == rare["size"] == len(rare["indices"]) > 0
    for name in ("rouge1", "rougeL"):
        full = record.per_example[f"test/{name}"]
        assert record.per_example[f"rare/{name}"] == [full[i] for i in rare["indices"]]
    only = evaluate_summarization(
        SummarizationConfig(**{**asdict(cfg), "rare_subset": "only", "epochs": 0}), tmp_path / "only")[0]
    assert only.primary == "rare/rouge1" and not any(k.startswith("test/") for k in only.metrics)
    assert len(only.per_example["rare/rouge1"]) == rare["size"]


def test_failed_run_is_recorded_others_continue_and_resume_skips_ok(tiny_model_dir, task_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    out = tmp_path / "out"
    models = [f"broken={broken}", f"bart={tiny_model_dir('bart')}"]
    records = evaluate_summarization(_config(task_dir, models), out)
    assert [r.status for r in records] == ["failed", "ok"]
    assert "broken" in records[0].error and "\n" not in records[0].error
    stamp = (out / "bart" / "seed-0" / "result.json").stat().st_mtime_ns
    again = evaluate_summarization(_config(task_dir, models), out)
    assert [r.status for r in again] == ["failed", "ok"]
    assert (out / "bart" / "seed-0" / "result.json").stat().st_mtime_ns == stamp  # ok run not redone
    with pytest.raises(DefembError, match="other settings"):
        evaluate_summarization(_config(task_dir, models, lr=2e-3), out)


def test_same_seed_same_result_other_seed_differs(tiny_model_dir, task_dir, tmp_path):
    model = [f"bart={tiny_model_dir('bart')}"]
    a = evaluate_summarization(_config(task_dir, model, seeds=[0, 1], test_limit=4), tmp_path / "a")
    b = evaluate_summarization(_config(task_dir, model, seeds=[0], test_limit=4), tmp_path / "b")
    assert a[0].per_example == b[0].per_example
    predictions = [(tmp_path / d / "bart" / f"seed-{s}" / "predictions.jsonl").read_text()
                   for d, s in (("a", 0), ("b", 0))]
    assert predictions[0] == predictions[1]
    losses = [json.loads((tmp_path / "a" / "bart" / f"seed-{s}" / "training.json").read_text())["loss"]
              for s in (0, 1)]
    assert losses[0] != losses[1]


def test_a_trivially_learnable_task_is_learnt(tiny_model_dir, tmp_path):
    """Every summary is the same sentence: a few epochs must bring the loss down and the decoded text close."""
    rng = random.Random(1)
    rows = [{"document": " ".join(rng.choice(_WORDS) for _ in range(20)), "summary": "the dog saw a big cat"}
            for _ in range(20)]
    _write_jsonl(tmp_path / "train.jsonl", rows[:16])
    _write_jsonl(tmp_path / "test.jsonl", rows[16:])
    cfg = _config(tmp_path, [f"t5={tiny_model_dir('t5')}"], epochs=5, lr=3e-2, warmup_ratio=0.0, beams=1,
                  batch_tokens=2048, max_source_length=32)
    (record,) = evaluate_summarization(cfg, tmp_path / "out")
    loss = json.loads((tmp_path / "out" / "t5" / "seed-0" / "training.json").read_text())["loss"]
    assert len(loss) == 5 and loss[-1] < 0.6 * loss[0]
    assert record.metrics["test/rouge1"] > 0.6


def test_cli_runs_and_reports_bad_input_with_exit_2(tiny_model_dir, task_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["evaluate", "summarization", "--task", f"jsonl:{task_dir}", "--models",
                 f"bart={tiny_model_dir('bart')}", "--out", str(out), "--epochs", "1", "--beams", "2",
                 "--max-source-length", "48", "--max-target-length", "8", "--min-length", "1",
                 "--batch-tokens", "512", "--test-limit", "4", "--device", "cpu"])
    assert code == 0
    assert "bart" in capsys.readouterr().out
    (record,) = read_records(out)
    assert record.status == "ok" and len(record.per_example["test/rouge1"]) == 4
    code = main(["evaluate", "summarization", "--task", f"jsonl:{task_dir / 'test.jsonl'}", "--models",
                 f"bart={tiny_model_dir('bart')}", "--out", str(tmp_path / "x")])
    assert code == 2 and "no training set" in capsys.readouterr().err
