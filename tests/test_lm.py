"""evaluate lm: NLL of text, of rare tokens, of chosen words and of the text after them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from defemb.cli import main
from defemb.errors import DefembError
from defemb.evaluation.lm import score_documents, score_words, token_nll, word_examples

DOCS = [
    "The river runs by the old park. People meet in the garden near the station every day.",
    "A market opened in the city. The library stands by the green park and the office.",
    "Short one.",
]


def _load(path):
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def _slow_nll(model, ids):
    """One sequence, no padding, position by position: -log p(ids[t] | ids[:t])."""
    out = []
    for t in range(1, len(ids)):
        logits = model(input_ids=torch.tensor([ids[:t]])).logits[0, -1]
        out.append(float(-torch.log_softmax(logits.float(), -1)[ids[t]]))
    return np.array(out)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_batched_padded_nll_equals_one_position_at_a_time(tiny_model_dir, family):
    model, tokenizer = _load(tiny_model_dir(family))
    batch = [tokenizer(d)["input_ids"][:20] for d in DOCS]
    pad = tokenizer.eos_token_id
    with torch.no_grad():
        for ids, nll in zip(batch, token_nll(model, batch, pad), strict=True):
            np.testing.assert_allclose(nll, _slow_nll(model, ids), rtol=1e-4, atol=1e-5)


def test_document_scores_by_hand(tiny_model_dir):
    model, tokenizer = _load(tiny_model_dir("gpt2"))
    rare = set(range(300, 400))
    result = score_documents(model, tokenizer, DOCS, max_length=1000, rare=rare, batch_size=2)
    bos = tokenizer.bos_token_id
    per_doc, tokens, rare_nll = [], [], []
    with torch.no_grad():
        for doc in DOCS:
            ids = [bos, *tokenizer(doc, add_special_tokens=False)["input_ids"]]
            nll = _slow_nll(model, ids)  # every token of the document is predicted, the first one from BOS
            per_doc.append(nll.sum() / math.log(2) / len(doc.encode()))
            tokens.append(nll)
            rare_nll += [v for v, t in zip(nll, ids[1:], strict=True) if t in rare]
    np.testing.assert_allclose(result["per_example"]["text/bpb"], per_doc, rtol=1e-4)
    all_nll = np.concatenate(tokens)
    assert result["metrics"]["text/nll"] == pytest.approx(all_nll.mean(), rel=1e-4)
    assert result["metrics"]["text/tokens"] == len(all_nll)
    assert result["metrics"]["rare/nll"] == pytest.approx(np.mean(rare_nll), rel=1e-4)


def test_word_examples_are_whole_words_not_opening_the_sentence():
    docs = ["Park rangers walk. The parks open. The park-keeper sleeps. A park is green. They sleep by the park."]
    examples = word_examples(docs, ["park", "Park"], per_word=5)
    assert [(w, s[at : at + len(w)]) for w, s, at in examples] == [("park", "park"), ("park", "park")]
    assert examples[0][1] == "A park is green." and examples[1][2] == examples[1][1].rindex("park")
    assert len(word_examples(docs, ["park"], per_word=1)) == 1


def test_a_new_token_is_scored_as_one_token_and_the_pieces_as_their_sum(tiny_model_dir, tmp_path):
    """The same (word, sentence) under the original model (pieces) and with the word added as one token."""
    model, tokenizer = _load(tiny_model_dir("gpt2"))
    word, sentence = "zzyzx", "The old zzyzx runs by the green park and the river."
    at = sentence.index(word)
    pieces = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
    assert len(pieces) > 1
    before = score_words(model, tokenizer, [(word, sentence, at)], after=3, batch_size=1)
    bos = tokenizer.bos_token_id
    prefix = tokenizer(sentence[:at].rstrip(), add_special_tokens=False)["input_ids"]
    rest = tokenizer(sentence[at + len(word):], add_special_tokens=False)["input_ids"][:3]
    with torch.no_grad():
        nll = _slow_nll(model, [bos, *prefix, *pieces, *rest])
    k = len(prefix)
    assert before["metrics"]["word/nll"] == pytest.approx(nll[k : k + len(pieces)].sum(), rel=1e-4)
    assert before["metrics"]["after/nll"] == pytest.approx(nll[k + len(pieces):].mean(), rel=1e-4)

    from tokenizers import AddedToken

    tokenizer.add_tokens([AddedToken(" " + word, normalized=False)])
    new_id = tokenizer.convert_tokens_to_ids(" " + word)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        model.get_input_embeddings().weight[new_id] = torch.linspace(-1, 1, model.config.n_embd)
    after = score_words(model, tokenizer, [(word, sentence, at)], after=3, batch_size=1)
    with torch.no_grad():
        nll = _slow_nll(model, [bos, *prefix, new_id, *rest])
    assert after["metrics"]["word/nll"] == pytest.approx(nll[k], rel=1e-4)  # one token
    assert after["metrics"]["after/nll"] == pytest.approx(nll[k + 1:].mean(), rel=1e-4)


def test_command_writes_aligned_records_and_results_compare_them(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "docs.jsonl"
    data.write_text("\n".join(json.dumps({"text": d}) for d in DOCS) + "\n", encoding="utf-8")
    words = tmp_path / "added.tsv"
    words.write_text("word\tid\npark\t0\nriver\t1\n", encoding="utf-8")
    gpt2, llama = tiny_model_dir("gpt2"), tiny_model_dir("llama")
    out = tmp_path / "lm"
    args = ["evaluate", "lm", "--models", f"a={gpt2}", f"b={llama}", "--data", str(data), "--words", str(words),
            "--after", "4", "--out", str(out)]
    assert main(args) == 0
    records = {p.parent.parent.name: json.loads(p.read_text()) for p in out.rglob("result.json")}
    assert set(records) == {"a", "b"} and all(r["status"] == "ok" for r in records.values())
    for name in ("text/bpb", "word/nll", "after/nll"):
        assert len(records["a"]["per_example"][name]) == len(records["b"]["per_example"][name]) > 0
    assert records["a"]["metrics"]["word/examples"] == 3  # park twice, river once
    assert "text/bpb" in capsys.readouterr().out
    assert main(["results", str(out), "--order", "a,b", "--out", str(tmp_path / "tables")]) == 0


def test_bad_input_is_one_line(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "docs.txt"
    data.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    words = tmp_path / "w.txt"
    words.write_text("xylophone\n", encoding="utf-8")
    bert = tiny_model_dir("bert")
    cases = [
        (["--data", str(tmp_path / "nope.txt")], "not cnndm, xsum or an existing file"),
        (["--data", str(data), "--words", str(words)], "none of the 1 words"),
        (["--data", str(data), "--max-length", "1"], "at least 2"),
    ]
    for extra, message in cases:
        assert main(["evaluate", "lm", "--models", str(tiny_model_dir("gpt2")), *extra,
                     "--out", str(tmp_path / "o")]) == 2
        assert message in capsys.readouterr().err
    assert main(["evaluate", "lm", "--models", str(bert), "--data", str(data), "--out", str(tmp_path / "o2")]) == 0
    record = json.loads(next((tmp_path / "o2").rglob("result.json")).read_text())
    assert record["status"] == "failed" and "needs a causal LM" in record["error"]
    with pytest.raises(DefembError):
        from defemb.evaluation.lm import read_words

        (tmp_path / "empty.tsv").write_text("word\tid\n", encoding="utf-8")
        read_words(tmp_path / "empty.tsv")
