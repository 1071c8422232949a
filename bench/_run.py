"""What the multi-stage bench scripts share: run one command, printed first, logged to a file."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd: list[str], log_path: str) -> float:
    """Runs `cmd` from the repository root with its output appended to `log_path`; returns the
    seconds it took, or exits naming the log when it fails."""
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    t0 = time.perf_counter()
    with open(log_path, "a") as log:
        p = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if p.returncode:
        sys.exit(f"failed with status {p.returncode}: {shlex.join(cmd[:2])}; see {log_path}")
    return time.perf_counter() - t0
