"""Where evaluation datasets live: ``--data DIR``, else ``$DEFEMB_DATA/<name>``, else ``../shared/data/<name>``.

defemb never downloads datasets; a user points it at local copies (the GLUE TSVs, CNN/DailyMail CSVs, ...).
"""

from __future__ import annotations

import os
from pathlib import Path

from defemb.errors import DefembError

#: The data folder beside this repository (the layout the project's tests and benchmarks use).
SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def dataset_dir(name: str, given: str | os.PathLike | None = None) -> Path:
    """The folder holding dataset ``name`` (e.g. ``glue-mrpc``); a clear error names every place looked at."""
    if given is not None:
        path = Path(given)
        if not path.is_dir():
            raise DefembError(f"--data '{path}' is not a directory")
        return path
    candidates = []
    if os.environ.get("DEFEMB_DATA"):
        candidates.append(Path(os.environ["DEFEMB_DATA"]) / name)
    candidates += [Path.cwd().parent / "shared" / "data" / name, SHARED_DATA / name]
    for path in candidates:
        if path.is_dir():
            return path
    looked = ", ".join(str(p) for p in dict.fromkeys(candidates))
    raise DefembError(f"dataset '{name}' not found (looked in {looked}); pass --data DIR or set DEFEMB_DATA")
