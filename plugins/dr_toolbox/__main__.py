"""Entry point for `python -m dr_toolbox` (the sandbox runs the toolbox as a local process)."""

from __future__ import annotations

import sys

from dr_toolbox.cli import main

if __name__ == "__main__":
    sys.exit(main())
