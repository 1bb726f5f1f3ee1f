"""The definition-embeddings file: new table rows from the `embed` stage, read by `replace` (METHOD §8–§9).

One safetensors file (``*.safetensors``) holds

* ``token_ids``  int64   (n,)    vocabulary ids, each at most once;
* ``embeddings`` float32 (n, h)  row k is the definition embedding of ``token_ids[k]``;

and string metadata: ``format`` (``defemb-embeddings/1``), ``vocab_hash`` (`models.vocabulary_hash` of the
tokenizer the ids belong to), ``table`` (``input`` | ``encoder`` | ``decoder``: the table the rows are
meant for), ``model`` (source model name), ``aggregate`` (``first`` | ``mean``) and any free-form keys such
as ``run`` (values that are not strings are stored as JSON text).

Which prompt(s) produced each row goes to a sidecar ``<stem>.provenance.jsonl`` next to the file, one JSON
object per row: ``{"token_id": 1234, "token": "##ose", "prompts": ["corpus/train.jsonl:17", ...]}``. It is
kept out of the safetensors header because it can be far larger than the header limit (100 MB).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from defemb.errors import DefembError
from defemb.outputs import write_text_atomic

FORMAT = "defemb-embeddings/1"
REQUIRED_METADATA = ("vocab_hash", "table", "model", "aggregate")
EMBEDDING_TABLES = ("input", "encoder", "decoder")
AGGREGATES = ("first", "mean")


@dataclass
class DefinitionEmbeddings:
    """Definition rows keyed by token id, with the file's metadata."""

    token_ids: np.ndarray  # (n,) int64
    embeddings: np.ndarray = field(repr=False)  # (n, h) float32
    metadata: dict[str, str]

    @property
    def hidden_size(self) -> int:
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return int(self.token_ids.shape[0])


def provenance_path(path: str | os.PathLike) -> Path:
    """``dir/defs.safetensors`` -> ``dir/defs.provenance.jsonl``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.provenance.jsonl")


def _metadata_strings(metadata: Mapping[str, Any]) -> dict[str, str]:
    """Check the required keys and values; safetensors metadata must be str -> str."""
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise DefembError(f"definition-embeddings metadata lacks {', '.join(missing)}")
    if metadata["table"] not in EMBEDDING_TABLES:
        choices = ", ".join(EMBEDDING_TABLES)
        raise DefembError(f"definition-embeddings table '{metadata['table']}' is not one of {choices}")
    if metadata["aggregate"] not in AGGREGATES:
        raise DefembError(f"definition-embeddings aggregate '{metadata['aggregate']}' is not first or mean")
    strings = {k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in metadata.items()}
    strings["format"] = FORMAT
    return strings


def _check_rows(token_ids: np.ndarray, embeddings: np.ndarray, where: str) -> None:
    """Shapes, lengths, ids and values; ``where`` names the file in the message."""
    if token_ids.ndim != 1 or embeddings.ndim != 2:
        raise DefembError(
            f"{where}: token_ids must be 1-D and embeddings 2-D (got shapes {token_ids.shape} and {embeddings.shape})"
        )
    if token_ids.shape[0] != embeddings.shape[0]:
        raise DefembError(f"{where}: {token_ids.shape[0]} token_ids but {embeddings.shape[0]} embedding rows")
    if not np.issubdtype(token_ids.dtype, np.integer):
        raise DefembError(f"{where}: token_ids must be integers (got {token_ids.dtype})")
    if len(token_ids) and token_ids.min() < 0:
        raise DefembError(f"{where}: negative token id {int(token_ids.min())}")
    unique, counts = np.unique(token_ids, return_counts=True)
    if (counts > 1).any():
        raise DefembError(f"{where}: token id {int(unique[counts > 1][0])} has more than one row")
    bad = int((~np.isfinite(embeddings)).any(axis=1).sum())
    if bad:
        raise DefembError(f"{where}: {bad} embedding row(s) hold NaN or infinite values")


def save_embeddings(
    path: str | os.PathLike,
    token_ids: np.ndarray,
    embeddings: np.ndarray,
    metadata: Mapping[str, Any],
    provenance: list[dict] | None = None,
) -> Path:
    """Write the file atomically (temporary sibling + rename), and its provenance sidecar when given."""
    path = Path(path)
    token_ids = np.asarray(token_ids)
    embeddings = np.asarray(embeddings)
    _check_rows(token_ids, embeddings, str(path))
    strings = _metadata_strings(metadata)
    if provenance is not None and len(provenance) != len(token_ids):
        raise DefembError(f"{path}: {len(provenance)} provenance records for {len(token_ids)} rows")
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar = provenance_path(path)
    # The sidecar goes first: once the main file is in place its sidecar is complete, or (no provenance)
    # a stale sidecar of an earlier run is gone instead of describing rows it did not produce.
    if provenance is not None:
        write_text_atomic(sidecar, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in provenance))
    else:
        sidecar.unlink(missing_ok=True)
    tensors = {
        "token_ids": np.ascontiguousarray(token_ids, dtype=np.int64),
        "embeddings": np.ascontiguousarray(embeddings, dtype=np.float32),
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=strings)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def load_embeddings(path: str | os.PathLike) -> DefinitionEmbeddings:
    """Read and check a definition-embeddings file; every problem is a DefembError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DefembError(f"definition-embeddings file '{path}' does not exist")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = dict(handle.metadata() or {})
            names = set(handle.keys())
            missing = [name for name in ("token_ids", "embeddings") if name not in names]
            if missing:
                raise DefembError(f"{path}: no tensor named {' or '.join(missing)} (has: {', '.join(sorted(names))})")
            token_ids = handle.get_tensor("token_ids")
            embeddings = handle.get_tensor("embeddings")
    except (SafetensorError, OSError, ValueError) as exc:  # header not JSON, truncated, wrong magic: one line
        raise DefembError(f"'{path}' is not a readable safetensors file ({str(exc).splitlines()[0]})") from exc
    _check_rows(token_ids, embeddings, str(path))
    if not np.issubdtype(embeddings.dtype, np.floating):
        raise DefembError(f"{path}: embeddings must be floating point (got {embeddings.dtype})")
    missing_keys = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing_keys:
        raise DefembError(f"{path}: metadata lacks {', '.join(missing_keys)}; was it written by `defemb embed`?")
    if metadata["table"] not in EMBEDDING_TABLES:
        raise DefembError(f"{path}: metadata table '{metadata['table']}' is not one of {', '.join(EMBEDDING_TABLES)}")
    return DefinitionEmbeddings(token_ids.astype(np.int64), embeddings.astype(np.float32), metadata)


def load_provenance(path: str | os.PathLike) -> list[dict] | None:
    """The sidecar's records in row order, or None when the file has none."""
    sidecar = provenance_path(path)
    if not sidecar.is_file():
        return None
    with open(sidecar, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
