"""`defemb evaluate generate`: chat-template prompts, the word as its new token, greedy answers, resume."""

from __future__ import annotations

import json

import pytest

from defemb.cli import main
from defemb.errors import DefembError
from defemb.evaluation import generate as gen
from defemb.evaluation.generate import GenerateConfig, prompt_ids, run_generate, word_tokens
from defemb.extend import add_word_tokens
from defemb.models import load_model, save_model

WORD = "zorblatic"
TEMPLATE = ("{% for m in messages %}<<{{ m['role'] }}>> {{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<<assistant>>{% endif %}")


@pytest.fixture(scope="module")
def models(tiny_model_dir, tmp_path_factory):
    """(base gpt2 dir, the same with WORD added as a token and a chat template), and the words file."""
    root = tmp_path_factory.mktemp("generate")
    base = tiny_model_dir("gpt2")
    loaded = load_model(str(base))
    new_id = int(add_word_tokens(loaded.tokenizer, [WORD])[0])
    loaded.model.resize_token_embeddings(len(loaded.tokenizer), mean_resizing=False)
    loaded.tokenizer.chat_template = TEMPLATE
    extended = root / "extended"
    save_model(loaded, extended)
    words = root / "added.tsv"
    words.write_text(f"word\tid\n{WORD}\t{new_id}\nhouse\t0\n", encoding="utf-8")
    return str(base), str(extended), str(words), new_id


def test_the_word_is_its_new_token_only_in_the_extended_model(models):
    base, extended, _, new_id = models
    message = f"What does {WORD} mean?"
    at = message.index(WORD)
    extended_tokenizer = load_model(extended).tokenizer
    assert extended_tokenizer.convert_tokens_to_ids(word_tokens(extended_tokenizer, message, WORD, at)) == [new_id]
    assert len(word_tokens(load_model(base).tokenizer, message, WORD, at)) >= 2


def test_prompt_goes_through_the_chat_template_where_there_is_one(models):
    base, extended, _, _ = models
    with_template = load_model(extended).tokenizer
    ids = prompt_ids(with_template, "hi there")
    assert with_template.decode(ids) == "<<user>> hi there\n<<assistant>>"
    plain = load_model(base).tokenizer
    assert prompt_ids(plain, "hi there") == plain("hi there")["input_ids"]


def test_answers_are_greedy_and_a_rerun_resumes(models, tmp_path, monkeypatch):
    base, extended, words, _ = models
    config = GenerateConfig(models=[f"base={base}", f"ext={extended}"], words=words, max_new_tokens=6)
    first = run_generate(config, tmp_path / "a")
    again = run_generate(config, tmp_path / "b")
    assert first == {k: {**v, "wall_s": first[k]["wall_s"]} for k, v in again.items()}  # same text, not same time
    assert [a["word"] for a in first["ext"]["answers"]] == [WORD, "house"]
    assert all(a["answer"] for r in first.values() for a in r["answers"])
    report = (tmp_path / "a" / "generations.md").read_text(encoding="utf-8")
    assert report.count("| base |") == 2 and f"## {WORD}" in report

    def refuse(*args, **kwargs):
        raise AssertionError("a finished model was generated again")

    monkeypatch.setattr(gen, "generate_one", refuse)
    assert run_generate(config, tmp_path / "a") == first


def test_bad_settings_are_one_line_errors(models, minilm_dir, tmp_path):
    _, extended, words, _ = models
    with pytest.raises(DefembError, match="no \\{word\\}"):
        GenerateConfig(models=[extended], words=words, prompt="What?")
    with pytest.raises(DefembError, match="--max-words"):
        GenerateConfig(models=[extended], words=words, max_words=0)
    with pytest.raises(DefembError, match="needs a causal LM"):
        run_generate(GenerateConfig(models=[str(minilm_dir)], words=words), tmp_path / "enc")


def test_command_writes_the_report(models, tmp_path, capsys):
    _, extended, words, _ = models
    out = tmp_path / "out"
    main(["evaluate", "generate", "--models", f"ext={extended}", "--words", words, "--max-words", "1",
          "--max-new-tokens", "4", "--out", str(out)])
    assert "generations.md" in capsys.readouterr().out
    saved = json.loads((out / "ext.json").read_text(encoding="utf-8"))
    assert [a["word"] for a in saved["answers"]] == [WORD]
