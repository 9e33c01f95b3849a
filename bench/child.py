"""Run a timing snippet in a fresh Python process inside a given mirrorwatch checkout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_in_tree(
    tree: Path, code: str, args: list[str], env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``python -c code args...`` with ``tree`` first on the path; the JSON object the
    snippet prints last."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        # Run in the tree: ``python -c`` puts the working directory first on the path.
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])
