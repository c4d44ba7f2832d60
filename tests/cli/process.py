"""Run the installed `hearth` command in a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HEARTH = str(Path(sys.executable).with_name("hearth"))


def hearth_env(home: Path) -> dict[str, str]:
    # HEARTH_HOST on a port nothing serves: commands work on HEARTH_HOME, not on whatever
    # server happens to run on this machine (tests that want one pass its address).
    return {
        **os.environ,
        "HEARTH_HOME": str(home),
        "HEARTH_HOST": "127.0.0.1:9",
        "HEARTH_THREADS": "2",
        "COLUMNS": "200",
    }


def run_hearth(
    home: Path,
    *args: str,
    stdin: str | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HEARTH, *args],
        env={**hearth_env(home), **(env or {})},
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
    )
