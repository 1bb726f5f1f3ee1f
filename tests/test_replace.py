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
from defemb.models import get_table, load_model, save_model, set_table, tokenizer_kind, vocabulary_hash
from defemb.replace import ReplaceConfig, replace, replacement_count, task_texts, task_token_ids, text_columns

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
    assert lines[0] == "token\tid\tband\tnorm_diff\tcosine\tblend\tdegeneracy"
    return [line.split("\t") for line in lines[1:]]


def check_replaced_tsv(out, before, after, tokenizer, ranking) -> set[int]:
    """Every replaced.tsv row agrees with the tables; returns the ids it lists."""
    vocab = {i: t for t, i in tokenizer.get_vocab().items()}
    bands = ranking.band_of(before.shape[0])
    listed = set()
    for token, token_id, band, norm_diff, cosine, _, _ in read_replaced(out):
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


def test_numbers_within_alpha_by_default_and_all_on_request(tiny_model_dir, tmp_path):
    model = str(tiny_model_dir("bert"))
    tokenizer = AutoTokenizer.from_pretrained(model)
    vocab = tokenizer.get_vocab()
    numeric = sorted(i for t, i in vocab.items() if t.removeprefix("##").isdigit())
    row_ids = sorted(set(range(0, len(tokenizer), 3)) | set(numeric[::2]))
    write_definitions(model, tmp_path / "defs.safetensors", row_ids)
    paths, texts = write_task(tmp_path)
    common = ["replace", model, "--embeddings", str(tmp_path / "defs.safetensors"), "--alpha", "2",
              "--task-data", *paths, "--ranking", "index"]
    for name, extra in [("plain", []), ("within", ["--numbers", "within"]), ("numbers", ["--numbers"]),
                        ("all", ["--numbers", "all"])]:
        assert main([*common, *extra, "--out", str(tmp_path / name)]) == 0
    before = get_table(load_model(model).model)

    def changed(name):
        return set(np.flatnonzero((before != get_table(load_model(str(tmp_path / name)).model)).any(axis=1)))

    plain, both = changed("plain"), changed("numbers")
    with_rows = set(numeric) & set(row_ids)
    assert len(with_rows) >= 3 and not with_rows <= plain and plain & with_rows  # α picks some numbers, not all
    assert both == plain | with_rows == changed("all") and changed("within") == plain
    for name, numbers in [("plain", "within"), ("numbers", "all")]:
        assert json.loads((tmp_path / name / "defemb.json").read_text())["numbers"] == numbers


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
    capsys.readouterr()  # the fixture's own progress bars when this test runs first

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


def _bands_and_rows(model, definitions):
    """Ranking (index), band per id and the ranked ids that have a row, for the tiny bert model."""
    tokenizer = AutoTokenizer.from_pretrained(model)
    before = get_table(load_model(model).model)
    ranking = rank_tokens(tokenizer, before.shape[0], "index")
    covered = [int(i) for i in ranking.order if int(i) in definitions]
    return before, ranking.band_of(before.shape[0]), covered


def test_spread_scale_gives_each_band_the_spread_of_its_pretrained_rows(tiny_model_dir, tmp_path):
    model = str(tiny_model_dir("bert"))
    ids = list(range(5, 500))
    rows = write_definitions(model, tmp_path / "defs.safetensors", ids, seed=5)
    shrunk = {i: 0.002 * r for i, r in rows.items()}  # a predictor that shrank everything (tiny rows: RMS 0.11)
    save_embeddings(tmp_path / "shrunk.safetensors", np.array(ids), np.stack([shrunk[i] for i in ids]),
                    load_embeddings(tmp_path / "defs.safetensors").metadata)
    out = tmp_path / "scaled"
    assert main(["replace", model, "--embeddings", str(tmp_path / "shrunk.safetensors"), "--all", "--spread",
                 "scale", "--ranking", "index", "--out", str(out)]) == 0
    before, bands, covered = _bands_and_rows(model, shrunk)
    after = get_table(load_model(str(out)).model)
    for band in ("frequent", "medium", "rare"):
        members = [i for i in covered if bands[i] == band]
        old, new, raw = before[members], after[members], np.stack([shrunk[i] for i in members])
        rms = [np.sqrt(((x - x.mean(axis=0)) ** 2).sum(axis=1).mean()) for x in (old, new, raw)]
        assert rms[1] == pytest.approx(rms[0], rel=1e-5) and rms[2] < rms[0] / 3
        np.testing.assert_allclose(new.mean(axis=0), raw.mean(axis=0), atol=1e-6)  # around the rows' own mean
        raw_centred, new_centred = raw - raw.mean(axis=0), new - new.mean(axis=0)
        np.testing.assert_allclose(new_centred, raw_centred * (rms[0] / rms[2]), rtol=1e-4, atol=1e-5)
    summary = json.loads((out / "defemb.json").read_text())
    assert summary["spread"] == "scale" and set(summary["spread_rms"]) == {"frequent", "medium", "rare"}


def test_refit_maps_distorted_rows_back_to_the_table(tiny_model_dir, tmp_path):
    model = str(tiny_model_dir("bert"))
    before = get_table(load_model(model).model)
    ids = list(range(5, 500))
    rng = np.random.default_rng(8)
    distortion = 0.1 * np.eye(before.shape[1]) + 0.02 * rng.normal(size=(before.shape[1],) * 2)
    rows = ((before[ids] - 0.5) @ distortion).astype(np.float32)  # a shrunk, rotated, shifted view of the rows
    write_definitions(model, tmp_path / "defs.safetensors", ids)
    metadata = load_embeddings(tmp_path / "defs.safetensors").metadata
    save_embeddings(tmp_path / "defs.safetensors", np.array(ids), rows, metadata)
    written = {}
    for refit in ("none", "linear"):
        out = tmp_path / refit
        assert main(["replace", model, "--embeddings", str(tmp_path / "defs.safetensors"), "--all", "--refit", refit,
                     "--ranking", "index", "--out", str(out)]) == 0
        written[refit] = get_table(load_model(str(out)).model)[ids]
    np.testing.assert_allclose(written["none"], rows, atol=1e-6)
    error = ((written["linear"] - before[ids]) ** 2).sum(axis=1).mean()
    # the grid's least penalty still shrinks a little
    assert error < 0.01 * ((rows - before[ids]) ** 2).sum(axis=1).mean()
    summary = json.loads((tmp_path / "linear" / "defemb.json").read_text())
    assert summary["refit"] == "linear" and summary["refit_map"]["folds"] == 5
    assert summary["refit_map"]["error_refit"] == pytest.approx(error, rel=1e-3)


def test_blend_auto_weights_each_row_by_its_excess_disagreement(tiny_model_dir, tmp_path, capsys):
    model = str(tiny_model_dir("bert"))
    before = get_table(load_model(model).model)
    ids = list(range(5, 500))
    rng = np.random.default_rng(6)
    noise = np.where(np.array(ids) > 400, 3.0, 0.3)[:, None]  # the rarest ids (index ranking) disagree most
    rows = before[ids] + noise * rng.normal(size=(len(ids), before.shape[1])).astype(np.float32)
    write_definitions(model, tmp_path / "defs.safetensors", ids)
    metadata = load_embeddings(tmp_path / "defs.safetensors").metadata
    save_embeddings(tmp_path / "defs.safetensors", np.array(ids), rows, metadata)
    definitions = dict(zip(ids, rows, strict=True))
    out = tmp_path / "auto"
    assert main(["replace", model, "--embeddings", str(tmp_path / "defs.safetensors"), "--all", "--blend", "auto",
                 "--ranking", "index", "--out", str(out)]) == 0
    assert "blend auto, mean" in capsys.readouterr().out
    _, bands, covered = _bands_and_rows(model, definitions)
    u = {}
    for band in ("frequent", "medium", "rare"):
        members = [i for i in covered if bands[i] == band]
        spread = ((before[members] - before[members].mean(axis=0)) ** 2).sum(axis=1).mean()
        u.update({i: float(((before[i] - definitions[i]) ** 2).sum() / spread) for i in members})
    reference = float(np.median([u[i] for i in covered if bands[i] == "frequent"]))
    after = get_table(load_model(str(out)).model)
    listed = {int(r[1]): float(r[5]) for r in read_replaced(out)}
    for i in covered:
        lam = min(max(1 - reference / u[i], 0.0), 1.0)
        assert listed[i] == pytest.approx(lam, abs=1e-3)
        np.testing.assert_allclose(after[i], (1 - lam) * before[i] + lam * definitions[i], rtol=1e-4, atol=1e-5)
    rare = [listed[i] for i in covered if i > 400]
    assert np.mean(rare) > 0.9 and np.median([listed[i] for i in covered if i <= 400]) < 0.3
    assert json.loads((out / "defemb.json").read_text())["blend_reference"] == pytest.approx(reference, rel=1e-5)


def test_select_degenerate_replaces_rows_whose_neighbours_are_foreign(tiny_model_dir, tmp_path):
    source = tiny_model_dir("bert", fresh=True)
    tokenizer = AutoTokenizer.from_pretrained(source)
    loaded = load_model(str(source))
    E = get_table(loaded.model)
    vocab = tokenizer.get_vocab()
    symbols = sorted(i for t, i in vocab.items() if not any(c.isalnum() for c in t))  # punctuation
    words = [vocab[w] for w in ("park", "river", "library") if w in vocab]
    assert len(symbols) >= 8 and len(words) == 3
    rng = np.random.default_rng(7)
    for w in words:  # planted: each of these words sits in a cluster of such rows
        E[w] = E[symbols[0]] + 0.002 * rng.normal(size=E.shape[1]).astype(np.float32)
    E[symbols] = E[symbols[0]] + 0.002 * rng.normal(size=(len(symbols), E.shape[1])).astype(np.float32)
    set_table(loaded.model, E)
    save_model(loaded, source)
    row_ids = list(range(5, 500))
    write_definitions(str(source), tmp_path / "defs.safetensors", row_ids, seed=8)
    paths, _ = write_task(tmp_path)
    common = ["replace", str(source), "--embeddings", str(tmp_path / "defs.safetensors"), "--ranking", "index"]
    assert main([*common, "--select", "degenerate", "--out", str(tmp_path / "degenerate")]) == 0
    assert main([*common, "--select", "both", "--alpha", "2", "--task-data", *paths,
                 "--out", str(tmp_path / "both")]) == 0
    assert main([*common, "--alpha", "2", "--task-data", *paths, "--out", str(tmp_path / "frequency")]) == 0

    ranking = rank_tokens(tokenizer, E.shape[0], "index")
    tokens = [""] * E.shape[0]
    for t, i in vocab.items():
        tokens[i] = t
    candidates = [int(i) for i in ranking.order if int(i) in set(row_ids)]
    expected = {i for i in candidates if slow_share(E, i, ranking.order, tokens) >= 0.5}
    assert set(words) <= expected and len(expected) < len(candidates) / 2

    def changed(name):
        return set(np.flatnonzero((E != get_table(load_model(str(tmp_path / name)).model)).any(axis=1)).tolist())

    assert changed("degenerate") == expected
    in_task = set(task_token_ids(tokenizer, paths, len(tokenizer)).tolist())
    assert changed("both") == changed("frequency") | (expected & in_task) != changed("frequency")
    listed = {int(r[1]): float(r[6]) for r in read_replaced(tmp_path / "degenerate")}
    assert listed == pytest.approx({i: slow_share(E, i, ranking.order, tokens) for i in expected})
    summary = json.loads((tmp_path / "degenerate" / "defemb.json").read_text())
    assert summary["select"] == "degenerate" and summary["alpha"] is None and summary["degenerate"] == len(expected)


def slow_share(E, query, order, tokens, k=10) -> float:
    """Share of the k nearest (cosine) ranked rows that are placeholders or of another script (digits belong to
    every script), in plain Python."""
    def script(token):
        letters = [c for c in token.removeprefix("##") if c.isalpha()]
        if letters:
            return "LATIN" if letters[0].isascii() else letters[0]
        return "digits" if token.removeprefix("##").isdigit() else "symbols"

    unit = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)  # the padding row is zero
    others = sorted((int(j) for j in order if int(j) != query), key=lambda j: -float(unit[query] @ unit[j]))[:k]
    pairs = [(script(tokens[query]), script(tokens[j])) for j in others]
    return sum(tokens[j].startswith("[unused") or ("digits" not in pair and pair[0] != pair[1])
               for j, pair in zip(others, pairs, strict=True)) / k


def test_new_options_reject_bad_values(tiny_model_dir, tmp_path, capsys):
    model = str(tiny_model_dir("bert"))
    write_definitions(model, tmp_path / "defs.safetensors", [10, 11, 12])
    base = ["replace", model, "--embeddings", str(tmp_path / "defs.safetensors"), "--out", str(tmp_path / "out")]
    for extra, message in [(["--all", "--blend", "sometimes"], "neither a number"),
                           (["--select", "degenerate", "--all"], "drop --alpha"),
                           (["--select", "degenerate", "--alpha", "5"], "drop --alpha"),
                           (["--select", "both"], "--alpha")]:
        assert main([*base, *extra]) == 2
        assert message in capsys.readouterr().err
    for extra in (["--all", "--spread", "whiten"], ["--all", "--numbers", "some"], ["--all", "--refit", "cubic"]):
        with pytest.raises(SystemExit):
            main([*base, *extra])
    with pytest.raises(DefembError, match="--numbers"):
        ReplaceConfig(model, "x", all_tokens=True, numbers="some")
    with pytest.raises(DefembError, match="--refit"):
        ReplaceConfig(model, "x", all_tokens=True, refit="cubic")
    write_definitions(model, tmp_path / "rare.safetensors", [480, 481, 482])  # index ranking: rare ids only
    with pytest.raises(DefembError, match="no frequent token has a definition row"):
        replace(ReplaceConfig(model, str(tmp_path / "rare.safetensors"), all_tokens=True, blend="auto",
                              ranking="index"), tmp_path / "out")
    assert not (tmp_path / "out").exists()
