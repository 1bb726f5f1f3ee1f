"""Word similarity: readers for every shared layout, Spearman, coverage, the evaluator and its command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from defemb.errors import DefembError
from defemb.evaluation.records import read_records
from defemb.evaluation.wordsim import (
    WordPairs,
    WordsimConfig,
    read_pairs,
    read_sets,
    run_wordsim,
    score_sets,
    set_files,
    spearman,
    table_vectors,
    word_token_ids,
)
from defemb.models import get_table, load_model

WORD_SIM = Path(__file__).resolve().parents[2] / "shared" / "data" / "word-sim"


def shared(relative: str) -> Path:
    path = WORD_SIM / relative
    if not path.exists():
        pytest.skip(f"shared data file {path} not present")
    return path


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


# --- readers -------------------------------------------------------------------------------------------------

LAYOUTS = {
    "faruqui.txt": "car\tautomobile\t3.92\ngem\tjewel\t3.84\n",
    "faruqui-crlf.txt": "car\tautomobile\t3.92\r\ngem\tjewel\t3.84\r\n",
    "simverb.txt": "w1  w2  pos score wn\ncar\tautomobile\tV\t3.92\tSYNONYMS\ngem\tjewel\tV\t3.84\tNONE\n",
    "MEN_lemma": "word1 word2 score\ncar-n automobile-n 3.92\ngem-n jewel-j 3.84\n",
    "MEN_natural": "word1 word2 score\ncar automobile 3.92\ngem jewel 3.84\n",
    "simlex.txt": "word1\tword2\tPOS\tSimLex999\tconc(w1)\tconc(w2)\r\ncar\tautomobile\tN\t3.92\t4.5\t4.1\r\n"
                  "gem\tjewel\tN\t3.84\t4\t4\r\n",
    "ws353.csv": "Word 1,Word 2,Human (mean),1,2\r\ncar,automobile,3.92,4,3\r\ngem,jewel,3.84,3,4\r\n",
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_layout_reads_the_same_pairs(tmp_path, name):
    pairs = read_pairs(write(tmp_path, name, LAYOUTS[name]))
    assert pairs.pairs == (("car", "automobile"), ("gem", "jewel"))
    np.testing.assert_allclose(pairs.scores, [3.92, 3.84])


def test_set_names_drop_only_known_suffixes(tmp_path):
    assert read_pairs(write(tmp_path, "EN-MC-30.txt", LAYOUTS["faruqui.txt"])).name == "EN-MC-30"
    assert read_pairs(write(tmp_path, "MEN_form.dev", LAYOUTS["MEN_natural"])).name == "MEN_form.dev"


def test_lemma_suffixes_stay_when_not_every_word_has_one(tmp_path):
    pairs = read_pairs(write(tmp_path, "x.txt", "x-ray\tfilm\t3\ncar-n\tbus-n\t2\n"))
    assert pairs.pairs == (("x-ray", "film"), ("car-n", "bus-n"))


def test_case_is_kept(tmp_path):
    assert read_pairs(write(tmp_path, "x.txt", "Jerusalem\tIsrael\t8.46\n")).pairs == (("Jerusalem", "Israel"),)


@pytest.mark.parametrize(("text", "line", "value"), [
    ("car\tautomobile\t3.92\ngem\tjewel\thigh\n", 2, "high"),
    ("car\tautomobile\t3.92\ngem\tjewel\n", 2, "gem jewel"),
    ("word1\tword2\tPOS\tSimLex999\ncar\tautomobile\tN\t1\nold\tnew\tA\tx\n", 3, "'x'"),
])
def test_bad_lines_name_file_line_and_value(tmp_path, text, line, value):
    path = write(tmp_path, "bad.txt", text)
    with pytest.raises(DefembError, match=rf"bad\.txt:{line}: .*{value}"):
        read_pairs(path)


def test_empty_file_is_an_error(tmp_path):
    with pytest.raises(DefembError, match="no word pairs"):
        read_pairs(write(tmp_path, "empty.txt", "\n"))


def test_folders_skip_documentation_and_names_must_differ(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        write(folder, "set.txt", LAYOUTS["faruqui.txt"])
        write(folder, "README.txt", "not pairs\n")
    assert [p.name for p in set_files([str(a)])] == ["set.txt"]
    with pytest.raises(DefembError, match="repeated: set"):
        read_sets([str(a), str(b)])
    with pytest.raises(DefembError, match="neither a file nor a folder"):
        set_files([str(tmp_path / "missing")])


def test_shared_sets_read_with_their_known_sizes():
    simlex = read_pairs(shared("simlex-999-original/SimLex-999.txt"))
    faruqui = read_pairs(shared("eval-word-vectors/EN-SIMLEX-999.txt"))
    assert len(simlex.pairs) == 999 and simlex.pairs == faruqui.pairs
    np.testing.assert_allclose(simlex.scores, faruqui.scores)
    simverb = read_pairs(shared("simverb-3500-original/SimVerb-3500.txt"))
    assert len(simverb.pairs) == 3500 and simverb.pairs[0] == ("take", "remove") and simverb.scores[0] == 6.81
    men = read_pairs(shared("men-original/MEN_dataset_lemma_form_full"))
    assert len(men.pairs) == 3000 and men.pairs[0] == ("sun", "sunlight")
    assert not any(w.endswith(("-n", "-v", "-j")) for pair in men.pairs for w in pair)
    ws = [read_pairs(shared(f"wordsim353-original/{n}.csv")) for n in ("combined", "set1", "set2")]
    assert [len(s.pairs) for s in ws] == [353, 153, 200]
    assert set(ws[0].pairs) == set(ws[1].pairs) | set(ws[2].pairs)
    default = read_sets(None)
    assert len(default) == 12 and sum(len(s.pairs) for s in default) == 9734


# --- Spearman ------------------------------------------------------------------------------------------------

def _ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties sharing the mean of the ranks they span (written out by hand)."""
    ranks = [0.0] * len(values)
    for i, v in enumerate(values):
        below = sum(1 for w in values if w < v)
        equal = sum(1 for w in values if w == v)
        ranks[i] = below + (equal + 1) / 2
    return ranks


def _slow_spearman(x: list[float], y: list[float]) -> float:
    rx, ry = _ranks(x), _ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    return cov / (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5


def test_spearman_matches_ranks_by_hand_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.integers(0, 6, size=40).astype(float)  # many ties
        y = x + rng.normal(0, 2, size=40)
        assert spearman(x, y) == pytest.approx(_slow_spearman(list(x), list(y)), abs=1e-12)


def test_spearman_known_cases():
    x = np.arange(10.0)
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert np.isnan(spearman(x[:1], x[:1])) and np.isnan(spearman(x, np.ones(10)))


def _pairs(scores: list[float]) -> WordPairs:
    pairs = tuple((f"a{k}", f"b{k}") for k in range(len(scores)))
    return WordPairs("toy", "toy.txt", pairs, np.asarray(scores, dtype=float))


def _angle_vectors(angle_of_pair):
    """Vectors whose pair k has cosine cos(angle_of_pair(k)): a_k on the x axis, b_k rotated."""

    def vector(words):
        out = np.zeros((len(words), 2))
        for i, w in enumerate(words):
            theta = 0.0 if w.startswith("a") else angle_of_pair(int(w[1:]))
            out[i] = [np.cos(theta), np.sin(theta)]
        return out, np.ones(len(words), dtype=bool)

    return vector


def test_cosines_ordered_like_scores_give_rho_one_and_reversed_minus_one():
    scores = [5.0, 1.0, 3.0, 4.0, 2.0]
    toy = _pairs(scores)
    agree = score_sets([toy], _angle_vectors(lambda k: (6 - scores[k]) / 6))  # higher score, smaller angle
    disagree = score_sets([toy], _angle_vectors(lambda k: scores[k] / 6))
    assert agree["toy/spearman"] == pytest.approx(1.0) and disagree["toy/spearman"] == pytest.approx(-1.0)
    assert agree["mean/spearman"] == agree["toy/spearman"] and agree["toy/coverage"] == 1.0


# --- tokens and coverage on tiny models ----------------------------------------------------------------------

def test_a_word_that_is_only_unknown_is_not_covered(tiny_model_dir, tmp_path):
    loaded = load_model(str(tiny_model_dir("bert")))
    assert loaded.tokenizer.convert_ids_to_tokens(loaded.tokenizer("Zebra", add_special_tokens=False)["input_ids"]) \
        == ["[UNK]"]
    assert word_token_ids(loaded.tokenizer, "wordpiece", ["Zebra", "house"])[0] == []
    toy = read_pairs(write(tmp_path, "toy.txt", "house\tcity\t3\nhouse\tZebra\t1\npark\tcity\t2\nhouse\tpark\t4\n"))
    metrics = score_sets([toy], table_vectors(get_table(loaded.model), loaded.tokenizer, "wordpiece"))
    assert metrics["toy/pairs"] == 3 and metrics["toy/coverage"] == pytest.approx(0.75)


def test_word_initial_forms_for_bpe_and_sentencepiece(tiny_model_dir):
    gpt2 = load_model(str(tiny_model_dir("gpt2"))).tokenizer
    ids = word_token_ids(gpt2, "bpe", ["house"])[0]
    assert gpt2.convert_ids_to_tokens(ids)[0].startswith("Ġ")
    t5 = load_model(str(tiny_model_dir("t5"))).tokenizer
    assert word_token_ids(t5, "sentencepiece", ["house", "☃"]) == [t5(" house", add_special_tokens=False)
                                                                     ["input_ids"][:1], []]


def test_mean_of_token_rows_is_the_word_vector(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir("bert")))
    E = get_table(loaded.model)
    ids = word_token_ids(loaded.tokenizer, "wordpiece", ["1234"])[0]
    assert len(ids) > 1  # several pieces, so the mean is a real mean
    vectors, covered = table_vectors(E, loaded.tokenizer, "wordpiece")(["1234"])
    np.testing.assert_allclose(vectors[0], E[ids].mean(axis=0), rtol=1e-6)
    assert covered.all()


# --- the evaluator and its command ---------------------------------------------------------------------------

def test_run_writes_one_record_per_model_resumes_and_records_failures(tiny_model_dir, tmp_path):
    sets = write(tmp_path, "toy.txt", "house\tcity\t3\nhouse\tZebra\t1\npark\tcity\t2\nhouse\tpark\t4\n")
    not_a_model = tmp_path / "empty-dir"
    not_a_model.mkdir()
    out = tmp_path / "out"
    config = WordsimConfig(models=[f"tiny={tiny_model_dir('bert')}", f"broken={not_a_model}"], sets=[str(sets)])
    records = run_wordsim(config, out)
    by_label = {r.label: r for r in records}
    assert by_label["tiny"].status == "ok" and by_label["tiny"].seed is None
    assert by_label["tiny"].primary == "mean/spearman" and by_label["tiny"].per_example == {}
    assert by_label["broken"].status == "failed" and "config" in by_label["broken"].error
    assert (out / "tiny" / "seed-none" / "result.json").is_file()
    again = run_wordsim(config, out)
    assert [r.label for r in again] == ["broken"]  # the finished model is skipped
    with pytest.raises(DefembError, match="other settings"):
        run_wordsim(WordsimConfig(models=config.models, sets=[str(sets)], table="output"), out)


def test_bad_input_fails_before_any_work(tiny_model_dir, tmp_path):
    bad = write(tmp_path, "bad.txt", "a\tb\tnot-a-number\n")
    with pytest.raises(DefembError, match="bad.txt:1: score 'not-a-number'"):
        run_wordsim(WordsimConfig(models=[str(tiny_model_dir("bert"))], sets=[str(bad)]), tmp_path / "out")
    good = write(tmp_path, "good.txt", LAYOUTS["faruqui.txt"])
    with pytest.raises(DefembError, match="does not exist"):
        run_wordsim(WordsimConfig(models=["/no/such/model"], sets=[str(good)]), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_command_prints_and_writes(tiny_model_dir, tmp_path, capsys):
    from defemb.cli import main

    sets = write(tmp_path, "toy.txt", "house\tcity\t3\npark\tcity\t2\nhouse\tpark\t4\n")
    out = tmp_path / "out"
    assert main(["evaluate", "wordsim", "--models", f"tiny={tiny_model_dir('bert')}", "--sets", str(sets),
                 "--out", str(out)]) == 0
    assert "toy" in capsys.readouterr().out
    (record,) = read_records(out)
    assert json.loads((out / "config.json").read_text())["sets"] == [str(sets)]
    assert set(record.metrics) == {"toy/pairs", "toy/coverage", "toy/spearman", "mean/spearman"}
