"""Frozen pretrained MiniLM text tower vs a from-scratch text tower on HAM10000 notes, the same
budget otherwise (configs/ham_text_tower.py), 2 seeds each; zero-shot and retrieval figures on
the held-out test split from dermjax-eval. Training runs under `nice -n 10`.

    data_prep/prepare.sh --workdir runs/ham --source ham10000 --data-root ../shared/data/ham10000
    python bench/pretrained_text.py [--shards runs/ham/shards] [--steps 300] [--seeds 0,1] [--jobs 2]

The MiniLM runs share one file of cached note features (runs/ham_minilm_text_features.npz): the
frozen tower is the same for every seed. --jobs runs that many trainings side by side.

Writes bench/results/pretrained_text.json; each run's workdir and eval folder stay under runs/.
"""
import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def run(cmd, log):
    print("$", " ".join(cmd), flush=True)
    with open(log, "a") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", default="runs/ham/shards")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="bench/results/pretrained_text.json")
    a = ap.parse_args()

    def one(seed, arm):
        workdir = f"runs/ham_{arm}_s{seed}"
        train = ["nice", "-n", "10", f"{BIN}/dermjax-train", f"--config=configs/ham_text_tower.py:{arm}",
                 f"--workdir={workdir}", f"--config.data.shards={a.shards}", f"--config.seed={seed}",
                 f"--config.total_steps={a.steps}"]
        if arm == "minilm":
            train.append("--config.data.text_cache_file=runs/ham_minilm_text_features.npz")
        evaluate = [f"{BIN}/dermjax-eval", "--workdir", workdir, "--shards", a.shards, "--split", "test",
                    "--out", f"{workdir}/eval"]
        t0 = time.time()
        run(train, os.path.join(ROOT, f"{workdir}.log"))
        train_s = time.time() - t0
        run(evaluate, os.path.join(ROOT, f"{workdir}.log"))
        name = next(f for f in os.listdir(os.path.join(ROOT, workdir, "eval"))
                    if f.endswith(".json") and f != "contamination.json")
        with open(os.path.join(ROOT, workdir, "eval", name)) as f:
            r = json.load(f)
        row = {"arm": arm, "seed": seed, "workdir": workdir, "n_test": r["n"], "train_seconds": round(train_s, 1),
               "train_command": " ".join(train[3:]), "eval_command": " ".join(evaluate),
               **{k: r["zero_shot"][k] for k in ("weighted_f1", "accuracy", "balanced_accuracy", "macro_auroc")},
               **{k: r["retrieval"][k] for k in ("p_at_5", "p_at_10", "map")}}
        print(json.dumps(row), flush=True)
        return row

    tasks = [(int(s), arm) for s in a.seeds.split(",") for arm in ("minilm", "scratch")]
    with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
        runs = list(pool.map(lambda t: one(*t), tasks))
    summary = {}
    for arm in ("minilm", "scratch"):
        rows = [r for r in runs if r["arm"] == arm]
        summary[arm] = {k: statistics.mean(r[k] for r in rows)
                        for k in ("weighted_f1", "accuracy", "balanced_accuracy", "macro_auroc", "p_at_5", "map")}
    out = {"what": "zero-shot on the HAM10000 test split (patient-level split), frozen pretrained MiniLM "
                   "text tower vs from-scratch text tower, same image tower and budget",
           "steps": a.steps, "batch_size": 128, "image": "ViT 64 px, patch 8, width 128, depth 3",
           "runs": runs, "mean": summary,
           "minilm_beats_scratch_every_seed": all(
               m["weighted_f1"] > s["weighted_f1"] for m in runs if m["arm"] == "minilm"
               for s in runs if s["arm"] == "scratch" and s["seed"] == m["seed"])}
    os.makedirs(os.path.dirname(os.path.join(ROOT, a.out)), exist_ok=True)
    with open(os.path.join(ROOT, a.out), "w") as f:
        from dermjax.cpu_env import machine

        out["machine"] = machine()
        json.dump(out, f, indent=2)
    print(json.dumps(out["mean"], indent=2))


if __name__ == "__main__":
    main()
