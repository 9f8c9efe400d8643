"""How every benchmark ends: one JSON document on stdout (and optionally a file), all other output
on stderr, exit status 0 only when the figures meet the target."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def emit(measure: Callable[[], dict[str, Any]], output: Path | None, *, ok_key: str = "meets_target") -> int:
    """Run `measure` with fd 1 sent to stderr (Airflow and library logging write there), then print."""
    sys.stdout.flush()
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            doc = measure()
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
        os.close(real_stdout)
    text = json.dumps(doc, indent=2)
    if output:
        output.write_text(text + "\n")
    print(text)
    return 0 if doc.get(ok_key, True) else 1
