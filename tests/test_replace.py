"""`defemb replace` and the definition-embeddings file: which rows change, by how much, and bad input."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from safetensors.numpy import save_file
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

from defemb.analysis.projection import printable
from defemb.cli import main
from defemb.embeddings import load_embeddings, load_provenance, provenance_path, save_embeddings
from defemb.errors import DefembError
from defemb.frequency import rank_tokens
from defemb.models import get_table, load_model, tokenizer_kind, vocabulary_hash
from defemb.replace import replacement_count, task_texts, task_token_ids, text_columns

SENTENCES = [
    "Alice saw the old dog near the park.",
    "Why did Bob sell the green car for 12 dollars?",
    "The quiet river was 20 years old.",
    "Room #102 is on the first floor of the library.",
]


def write_definitions(
    model_dir, path, ids, *, table="input", hidden=32, seed=0, vocab_hash=None
) -> dict[int, np.ndarray]:
    """A definition-embeddings file with random rows for ``ids``; returns id -> row."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = np.random.default_rng(seed).normal(size=(len(ids), hidden)).astype(np.float32)
    metadata = {"vocab_hash": vocab_hash or vocabulary_hash(tokenizer), "table": table, "model": str(model_dir),
                "aggregate": "first", "run": {"seed": seed}}
    save_embeddings(path, np.asarray(ids), rows, metadata)
    return dict(zip(ids, rows, strict=True))


def write_task(tmp_path) -> tuple[list[str], list[str]]:
    """Task files of three kinds; returns (paths, the texts they hold)."""
    tsv = tmp_path / "train.tsv"
    tsv.write_text("id\tsentence\tlabel\n" + "".join(f"2024\t{s}\t1999\n" for s in SENTENCES[:2]), encoding="utf-8")
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text(json.dumps({"label": 1, "pair": {"text": SENTENCES[2]}}) + "\n", encoding="utf-8")
    txt = tmp_path / "train.txt"
    txt.write_text(SENTENCES[3] + "\n", encoding="utf-8")
    return [str(tsv), str(jsonl), str(txt)], SENTENCES


def expected_ids(tokenizer, ranking_order, texts, row_ids, alpha) -> list[int]:
    """The replacement rule of METHOD §9 written out with plain Python on an independent tokenization."""
    in_task = {i for ids in tokenizer(texts, add_special_tokens=False)["input_ids"] for i in ids}
    ranked = [int(i) for i in ranking_order if int(i) in in_task]
    with_rows = [i for i in ranked if i in set(row_ids)]
    k = min(math.floor(alpha * len(ranking_order) / 100 + 1e-9), len(ranked))
    return with_rows[len(with_rows) - k :] if k else []


def read_replaced(out) -> list[list[str]]:
    lines = (out / "replaced.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "token\tid\tband\tnorm_diff\tcosine"
    return [line.split("\t") for line in lines[1:]]


def check_replaced_tsv(out, before, after, tokenizer, ranking) -> set[int]:
    """Every replaced.tsv row agrees with the tables; returns the ids it lists."""
    vocab = {i: t for t, i in tokenizer.get_vocab().items()}
    bands = ranking.band_of(before.shape[0])
    listed = set()
    for token, token_id, band, norm_diff, cosine in read_replaced(out):
        i = int(token_id)
        listed.add(i)
        assert token == printable(vocab[i]) and band == bands[i]
        old, new = before[i].astype(np.float64), after[i].astype(np.float64)
        assert float(norm_diff) == pytest.approx(np.linalg.norm(old - new), rel=1e-5, abs=1e-6)
        assert float(cosine) == pytest.approx(old @ new / np.linalg.norm(old) / np.linalg.norm(new), rel=1e-5)
    return listed


@pytest.mark.parametrize("alpha", [2.0, 100.0])
def test_alpha_replaces_the_rarest_task_tokens_with_rows(tiny_model_dir, tmp_path, alpha):
    model = str(tiny_model_dir("bert"))
    tokenizer = AutoTokenizer.from_pretrained(model)
    row_ids = sorted(set(range(0, len(tokenizer), 2)) | {tokenizer.cls_token_id})  # the special row is never used
    definitions = write_definitions(model, tmp_path / "defs.safetensors", row_ids)
    paths, texts = write_task(tmp_path)
    out = tmp_path / "replaced"
    args = ["replace", model, "--embeddings", str(tmp_path / "defs.safetensors"), "--alpha", str(alpha),
            "--task-data", *paths, "--ranking", "index", "--out", str(out)]
    assert main(args) == 0

    before = get_table(load_model(model).model)
    after = get_table(load_model(str(out)).model)
    ranking = rank_tokens(tokenizer, before.shape[0], "index")
    expected = expected_ids(tokenizer, ranking.order, texts, row_ids, alpha)
    assert 0 < len(expected) and (alpha == 100 or len(expected) == math.floor(alpha * len(ranking.order) / 100))
    changed = set(np.flatnonzero((before != after).any(axis=1)).tolist())
    assert changed == set(expected)
    for i in expected:
        np.testing.assert_array_equal(after[i], definitions[i])
    assert check_replaced_tsv(out, before, after, tokenizer, ranking) == set(expected)
    summary = json.loads((out / "defemb.json").read_text())
    assert summary["replaced"] == len(expected) and summary["vocabulary"] == len(ranking.order)
    in_task = {i for ids in tokenizer(texts, add_special_tokens=False)["input_ids"] for i in ids}
    assert summary["task_tokens"] == len(in_task - {tokenizer.cls_token_id})
    assert summary["candidates"] == len(in_task & set(row_ids) - {tokenizer.cls_token_id})
    if alpha == 100:  # k = |V_task| then, so every candidate is replaced
        assert summary["replaced"] == summary["candidates"]


def test_numbers_adds_every_numeric_row_to_the_alpha_choice(tiny_model_dir, tmp_path):
    model = str(tiny_model_dir("bert"))
    tokenizer = AutoTokenizer.from_pretrained(model)
    vocab = tokenizer.get_vocab()
    numeric = sorted(i for t, i in vocab.items() if t.removeprefix("##").isdigit())
    row_ids = sorted(set(range(0, len(tokenizer), 3)) | set(numeric[::2]))
    write_definitions(model, tmp_path / "defs.safetensors", row_ids)
    paths, texts = write_task(tmp_path)
    common = ["replace", model, "--embeddings", str(tmp_path / "defs.safetensors"), "--alpha", "2",
              "--task-data", *paths, "--ranking", "index"]
    assert main([*common, "--out", str(tmp_path / "plain")]) == 0
    assert main([*common, "--numbers", "--out", str(tmp_path / "numbers")]) == 0
    before = get_table(load_model(model).model)
    plain = set(np.flatnonzero((before != get_table(load_model(str(tmp_path / "plain")).model)).any(axis=1)))
    both = set(np.flatnonzero((before != get_table(load_model(str(tmp_path / "numbers")).model)).any(axis=1)))
    with_rows = set(numeric) & set(row_ids)
    assert len(with_rows) >= 3 and not with_rows <= plain
    assert both == plain | with_rows
    assert json.loads((tmp_path / "numbers" / "defemb.json").read_text())["numbers"] is True


def test_all_replaces_every_row_and_the_tied_head_follows(tiny_model_dir, tmp_path, capsys):
    model = str(tiny_model_dir("gpt2"))
    tokenizer = AutoTokenizer.from_pretrained(model)
    row_ids = [tokenizer.eos_token_id, *range(300, 600, 3)]
    definitions = write_definitions(model, tmp_path / "defs.safetensors", row_ids, seed=1)
    out = tmp_path / "all"
    assert main(["replace", model, "--embeddings", str(tmp_path / "defs.safetensors"), "--all", "--out", str(out)]) == 0
    assert f"replaced {len(row_ids) - 1} rows" in capsys.readouterr().out

    before = get_table(load_model(model).model)
    reloaded = AutoModelForCausalLM.from_pretrained(str(out))
    after = reloaded.get_input_embeddings().weight.detach().numpy()
    np.testing.assert_array_equal(reloaded.get_output_embeddings().weight.detach().numpy(), after)
    changed = set(np.flatnonzero((before != after).any(axis=1)).tolist())
    assert changed == set(row_ids) - {tokenizer.eos_token_id}
    for i in changed:
        np.testing.assert_array_equal(after[i], definitions[i])
    ranking = rank_tokens(tokenizer, before.shape[0], None, tokenizer_kind(tokenizer))  # gpt2's default: index
    assert check_replaced_tsv(out, before, after, tokenizer, ranking) == changed
    summary = json.loads((out / "defemb.json").read_text())
    assert summary["ranking"] == "index" and summary["task_tokens"] is None and summary["tying"]["output_tied_to"]
    analysis = tmp_path / "analysis"
    assert main(["analyze", str(out), "--out", str(analysis), "--sample", "0", "--plot-points", "200"]) == 0
    assert json.loads((analysis / "analysis.json").read_text())["bands"]["rare"]["isotropy"] > 0


def test_blend_zero_keeps_the_table_and_half_gives_the_midpoint(tiny_model_dir, tmp_path):
    model = str(tiny_model_dir("bert"))
    row_ids = list(range(100, 200))
    definitions = write_definitions(model, tmp_path / "defs.safetensors", row_ids, seed=2)
    before = get_table(load_model(model).model)
    for blend in ("0", "0.5"):
        out = tmp_path / f"blend-{blend}"
        assert main(["replace", model, "--embeddings", str(tmp_path / "defs.safetensors"), "--all", "--blend", blend,
                     "--ranking", "index", "--out", str(out)]) == 0
        after = get_table(load_model(str(out)).model)
        if blend == "0":
            np.testing.assert_array_equal(after, before)
            assert {float(row[3]) for row in read_replaced(out)} == {0.0}
        else:
            midpoint = before.copy()
            midpoint[row_ids] = 0.5 * before[row_ids] + 0.5 * np.stack([definitions[i] for i in row_ids])
            np.testing.assert_allclose(after, midpoint, rtol=0, atol=1e-6)


def test_t5gemma_decoder_rows_leave_the_encoder_alone(tiny_model_dir, tmp_path):
    model = str(tiny_model_dir("t5gemma"))
    row_ids = list(range(50, 450, 5))
    definitions = write_definitions(model, tmp_path / "defs.safetensors", row_ids, table="decoder", seed=3)
    out = tmp_path / "decoder"
    # no --table: the file's metadata says decoder
    assert main(["replace", model, "--embeddings", str(tmp_path / "defs.safetensors"), "--all", "--ranking", "index",
                 "--out", str(out)]) == 0
    source, reloaded = load_model(model).model, load_model(str(out)).model
    np.testing.assert_array_equal(get_table(reloaded, "encoder"), get_table(source, "encoder"))
    decoder = get_table(reloaded, "decoder")
    np.testing.assert_array_equal(decoder[row_ids], np.stack([definitions[i] for i in row_ids]))
    others = np.setdiff1d(np.arange(decoder.shape[0]), row_ids)
    np.testing.assert_array_equal(decoder[others], get_table(source, "decoder")[others])
    np.testing.assert_array_equal(get_table(reloaded, "output"), decoder)
    assert json.loads((out / "defemb.json").read_text())["table"] == "decoder"


def test_embeddings_file_round_trip_and_provenance(tmp_path):
    path = tmp_path / "defs.safetensors"
    ids, rows = np.array([7, 3, 11]), np.arange(12, dtype=np.float64).reshape(3, 4)
    provenance = [{"token_id": int(i), "token": f"t{i}", "prompts": [f"train.jsonl:{i}"]} for i in ids]
    meta = {"vocab_hash": "abc", "table": "encoder", "model": "m", "aggregate": "mean", "run": {"seed": 0}}
    save_embeddings(path, ids, rows, meta, provenance)
    loaded = load_embeddings(path)
    assert loaded.token_ids.dtype == np.int64 and loaded.embeddings.dtype == np.float32
    np.testing.assert_array_equal(loaded.token_ids, ids)
    np.testing.assert_array_equal(loaded.embeddings, rows.astype(np.float32))
    assert loaded.metadata["table"] == "encoder" and json.loads(loaded.metadata["run"]) == {"seed": 0}
    assert provenance_path(path).name == "defs.provenance.jsonl" and load_provenance(path) == provenance
    save_embeddings(path, ids, rows, meta)  # rewritten without provenance: the old sidecar must not linger
    assert load_provenance(path) is None
    with pytest.raises(DefembError, match="NaN"):
        save_embeddings(path, ids, np.full((3, 4), np.nan), meta)
    with pytest.raises(DefembError, match="aggregate"):
        save_embeddings(path, ids, rows, {**meta, "aggregate": "max"})


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ({"token_ids": np.arange(3)}, "no tensor named embeddings"),
        ({"token_ids": np.arange(3), "embeddings": np.zeros((2, 4), np.float32)}, "3 token_ids but 2"),
        ({"token_ids": np.arange(3), "embeddings": np.array([[np.inf] * 4, [np.nan] * 4, [0] * 4], np.float32)},
         "2 embedding row"),
        ({"token_ids": np.array([1, 1]), "embeddings": np.zeros((2, 4), np.float32)}, "more than one row"),
    ],
)
def test_load_rejects_broken_files(tmp_path, tensors, message):
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path), metadata={"vocab_hash": "x", "table": "input", "model": "m", "aggregate": "first"})
    with pytest.raises(DefembError, match=message):
        load_embeddings(path)


def test_text_column_rule_and_task_files(tiny_model_dir, tmp_path):
    assert text_columns(["idx", "#1 String", "Quality", "question"], []) == [1, 3]
    rows = [["1", "a cat", "0.5", "x1"], ["2", "a dog", "7", "3"], ["3", "", "1", "y"]]
    assert text_columns(["a", "b", "c", "d"], rows) == [1, 3]  # no name matches: the mostly non-numeric ones
    csv_file = tmp_path / "t.csv"
    csv_file.write_text('n,body\n1,"a, quoted\nline"\n2,plain\n', encoding="utf-8")
    assert list(task_texts(csv_file)) == ["a, quoted\nline", "plain"]

    paths, texts = write_task(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir("bert"))
    found = task_token_ids(tokenizer, paths, len(tokenizer))
    expected = {i for ids in tokenizer(texts, add_special_tokens=False)["input_ids"] for i in ids}
    assert set(found.tolist()) == expected
    assert tokenizer.convert_tokens_to_ids("1999") not in expected  # the label column is not text
    assert replacement_count(7, 500, 1000) == 35 and replacement_count(0.5, 495, 1000) == 2
    assert replacement_count(100, 495, 40) == 40


@pytest.mark.parametrize("alpha", [7, 7.0, np.float64(7.0), np.float32(7.0), np.int64(7), Fraction(7), Decimal("7.0")])
def test_replacement_count_takes_any_real_number_type(alpha):
    assert replacement_count(alpha, 500, 1000) == 35
    assert replacement_count(np.float64(0.5), np.int64(495), np.int64(1000)) == 2  # 2.475, not rounded up


def test_bad_input_is_exit_2_with_nothing_written(tiny_model_dir, tmp_path, capsys):
    model = str(tiny_model_dir("bert"))
    good = tmp_path / "defs.safetensors"
    write_definitions(model, good, [10, 11, 12])
    write_definitions(model, tmp_path / "h16.safetensors", [10, 11], hidden=16)
    write_definitions(model, tmp_path / "other.safetensors", [10, 11], vocab_hash="f" * 64)
    (tmp_path / "text.safetensors").write_text("not a safetensors file\n")
    save_file({"token_ids": np.arange(2), "embeddings": np.full((2, 32), np.nan, np.float32)},
              str(tmp_path / "nan.safetensors"), metadata={"vocab_hash": "x", "table": "input", "model": "m",
                                                           "aggregate": "first"})
    (tmp_path / "numbers.tsv").write_text("a\tb\n1\t2\n3\t4\n")
    (tmp_path / "broken.jsonl").write_text('{"text": "fine"}\n{"text": \n')
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 8)  # would otherwise replace rows from garbage
    (tmp_path / "wide.tsv").write_text("x" * 10_000_000 + "\n1\n")  # a 10 MB header line
    task = tmp_path / "task.txt"
    task.write_text(SENTENCES[0] + "\n")
    out = tmp_path / "out"

    def args(*extra: str, embeddings=good) -> list[str]:
        return ["replace", model, "--embeddings", str(embeddings), "--out", str(out), *extra]

    cases = [
        (args("--alpha", "0", "--task-data", str(task)), "(0, 100]"),
        (args("--alpha", "101", "--task-data", str(task)), "(0, 100]"),
        (args("--alpha", "nan", "--task-data", str(task)), "(0, 100]"),
        (args("--all", "--blend", "1.5"), "[0, 1]"),
        (args("--all", "--blend", "-0.1"), "[0, 1]"),
        (args("--task-data", str(task)), "--alpha"),
        (args("--alpha", "5"), "--task-data"),
        (args("--all", "--alpha", "5"), "--all"),
        (args("--all", "--table", "output"), "cannot be replaced"),
        (args("--all", "--table", "decoder"), "not an encoder-decoder"),
        (args("--all", embeddings=tmp_path / "missing.safetensors"), "missing.safetensors' does not exist"),
        (args("--all", embeddings=tmp_path / "text.safetensors"), "not a readable safetensors"),
        (args("--all", embeddings=tmp_path / "nan.safetensors"), "NaN"),
        (args("--alpha", "5", "--task-data", str(tmp_path / "gone.tsv")), "gone.tsv' does not exist"),
        (args("--all", embeddings=tmp_path / "h16.safetensors"), "dimension 16, "),
        (args("--all", embeddings=tmp_path / "h16.safetensors"), "input table has 32"),
        (args("--all", embeddings=tmp_path / "other.safetensors"), "ffffffffffff"),
        (args("--alpha", "5", "--task-data", str(tmp_path / "numbers.tsv")), "no text column"),
        (args("--alpha", "5", "--task-data", str(tmp_path / "broken.jsonl")), "broken.jsonl:2"),
        (args("--alpha", "5", "--task-data", str(tmp_path / "binary.txt")), "binary.txt: task data looks binary"),
        (args("--alpha", "5", "--task-data", str(tmp_path / "wide.tsv")), "(header 'xxxxx"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and len(err[0]) < 400, (argv, err[0][:400])
        assert not out.exists() and not list(tmp_path.glob(".out*")), argv

    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert main(args("--all")) == 2 and "--force" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "precious"
    assert main(args("--all", "--force")) == 0
    assert not (out / "keep.txt").exists() and AutoModel.from_pretrained(str(out)) is not None
