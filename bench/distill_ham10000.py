"""Does distillation on unpaired images help? HAM10000, patient-level split, notes kept for 20% of
the training patients; the other 80% of the training images are unpaired.

    nice -n 10 python bench/distill_ham10000.py [--work runs/distill_ham] [--seeds 0,1,2]

Settings, each trained with `dermjax-train` and scored with `dermjax-eval` on the test split
(zero-shot weighted F1, balanced accuracy, class-matching image->note P@5):
- teacher:     the student's architecture trained on the 20% paired only, for up to
               --teacher-steps; the checkpoint (every --eval-every steps) with the best
               *validation* weighted F1 is the teacher. Its zero-shot accuracy peaks early and then
               falls while retrieval keeps improving: the class prompts, texts the notes never
               contain, drift as the text tower fits 1,600 images' notes.
- paired_only: the student (the quickstart model) on the 20% paired only, batch 128;
- distill:     the same student, same steps x batch: 64 paired + 64 unpaired images per batch,
               distilled from the teacher of the same seed (configs/distill_cpu.py);
- full_paired: the same student on 100% paired, batch 128 (the upper reference).
Students are scored at their last step (the table the issue asks for). Every student checkpoint is
also scored on the validation split, and "val_selected" in the JSON gives each student's test
figures at its best validation step, so early stopping is not an advantage only the teacher had.
The commands are printed as they run. Every stage reuses what exists (a finished workdir, an
eval JSON), so rerunning after an interruption continues. Prepares the HAM10000 shards first
if --shards does not exist (needs DERMJAX_DATA_ROOT). Writes bench/results/distill_ham10000.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BIN = os.path.dirname(sys.executable)
sys.path.insert(0, HERE)
from _run import run  # noqa: E402
SETTINGS = ("teacher", "paired_only", "distill", "full_paired")

# Student and teacher are configs/quickstart.py's default model (1.1M params, 64 px images).
# Teachers use config.seed = seed, students seed + 10, so no student starts from its teacher's
# initialization.
STUDENT_SEED_OFFSET = 10




def prepare(shards: str, data_root: str) -> None:
    if os.path.isfile(os.path.join(shards, "tokenizer.model")):
        return
    work = os.path.dirname(os.path.abspath(shards))
    os.makedirs(work, exist_ok=True)
    log = os.path.join(work, "prep.log")
    ham = os.path.join(data_root, "ham10000")
    run([f"{BIN}/dermjax-prep", "notes", "--source", "ham10000", "--root", ham, "--out",
         f"{work}/notes.jsonl", "--styles", "template,report"], log)
    run([f"{BIN}/dermjax-prep", "shards", "--source", "ham10000", "--root", ham, "--notes", f"{work}/notes.jsonl",
         "--out", shards, "--num-shards", "8", "--workers", "2", "--max-side", "128"], log)
    run([f"{BIN}/dermjax-prep", "tokenizer", "--shards", shards, "--vocab-size", "2000"], log)


def evaluate(workdir: str, step: int, shards: str, split: str, log: str) -> dict:
    out = os.path.join(workdir, "eval" if split == "test" else "eval_val", str(step))
    result = os.path.join(out, f"ham10000-{split}.json")
    if not os.path.isfile(result):
        run([f"{BIN}/dermjax-eval", "--checkpoint", os.path.join(workdir, "checkpoints", str(step)), "--shards", shards,
             "--split", split, "--out", out, "--contamination", "off", "--no-probes"], log)
    r = json.load(open(result))
    return {"step": step, "weighted_f1": r["zero_shot"]["weighted_f1"],
            "balanced_accuracy": r["zero_shot"]["balanced_accuracy"], "p_at_5": r["retrieval"]["p_at_5"]}


def steps_of(workdir: str) -> list[int]:
    return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


def best_on_val(curve: list[dict]) -> int:
    """The step with the highest validation weighted F1 (the earliest of equals)."""
    return max(curve, key=lambda r: (r["weighted_f1"], -r["step"]))["step"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default=os.path.join(REPO, "runs", "distill_ham"))
    ap.add_argument("--shards", default=os.path.join(REPO, "runs", "ham", "shards"))
    ap.add_argument("--data-root", default=os.environ.get("DERMJAX_DATA_ROOT", os.path.join(REPO, "..", "shared", "data")))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--paired-fraction", type=float, default=0.2)
    ap.add_argument("--steps", type=int, default=400, help="student steps (batch 128) for every student setting")
    ap.add_argument("--teacher-steps", type=int, default=1200, help="the teacher schedule; its best val checkpoint is the teacher")
    ap.add_argument("--eval-every", type=int, default=100, help="checkpoints scored on the validation split")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "distill_ham10000.json"))
    a = ap.parse_args()
    prepare(a.shards, a.data_root)
    os.makedirs(a.work, exist_ok=True)
    common = [f"--config.data.shards={a.shards}", "--config.eval_every=0", "--config.log_every=25",
              f"--config.ckpt_every={a.eval_every}", f"--config.keep_every={a.eval_every}"]
    fraction = f"--config.data.paired_fraction={a.paired_fraction}"

    runs, val_selected, curves, timings = [], [], {}, {}
    for seed in [int(s) for s in a.seeds.split(",")]:
        teacher_ckpt = None  # set once the teacher is chosen, before the distill student needs it
        for setting in SETTINGS:
            workdir = os.path.join(a.work, f"{setting}_s{seed}")
            log = os.path.join(a.work, f"{setting}_s{seed}.log")
            config, extra = "configs/quickstart.py", [fraction, f"--config.total_steps={a.steps}"]
            if setting == "teacher":
                extra = [fraction, f"--config.total_steps={a.teacher_steps}"]
            elif setting == "distill":
                config, extra = "configs/distill_cpu.py", extra + [f"--config.distill.teacher={teacher_ckpt}"]
            elif setting == "full_paired":
                extra = extra[1:]
            config_seed = seed + (0 if setting == "teacher" else STUDENT_SEED_OFFSET)
            timings[f"{setting}_s{seed}"] = round(run(
                [f"{BIN}/dermjax-train", "--config", config, "--workdir", workdir, f"--config.seed={config_seed}",
                 *common, *extra], log), 1)
            curve = [evaluate(workdir, step, a.shards, "val", log) for step in steps_of(workdir)]
            curves[f"{setting}_s{seed}"] = curve
            best = best_on_val(curve)
            if setting == "teacher":
                teacher_ckpt = os.path.join(workdir, "checkpoints", str(best))
                scored = best
            else:
                scored = curve[-1]["step"]
                val_selected.append({"setting": setting, "seed": seed, **evaluate(workdir, best, a.shards, "test", log)})
            row = {"setting": setting, "seed": seed,
                   **{k: v for k, v in evaluate(workdir, scored, a.shards, "test", log).items() if k != "step"}}
            runs.append(row)
            print(json.dumps({**row, "step": scored, "val_weighted_f1": [r["weighted_f1"] for r in curve]}), flush=True)

    by = {s: [r for r in runs if r["setting"] == s] for s in SETTINGS}
    wins = [d["weighted_f1"] > p["weighted_f1"] for d, p in zip(by["distill"], by["paired_only"])]
    result = {
        "runs": runs,
        "distill_beats_paired_only_on_weighted_f1": {"per_seed": wins, "all": all(wins)},
        "val_selected": val_selected,
        "val_curves": curves,
        "settings": {"paired_fraction": a.paired_fraction, "student_steps": a.steps, "student_batch": 128,
                     "distill_batch": "64 paired + 64 unpaired", "teacher_steps_max": a.teacher_steps,
                     "teacher": "the student's architecture (configs/quickstart.py) on the paired fraction; "
                                "the checkpoint with the best validation weighted F1",
                     "students_scored_at": "their last step (runs); their best validation step (val_selected)",
                     "eval_every": a.eval_every,
                     "config_seeds": f"teacher: seed; students: seed + {STUDENT_SEED_OFFSET}",
                     "shards": os.path.abspath(a.shards), "image_size": 64,
                     # what configs/distill_cpu.py gave the distilled students (the first seed's)
                     "distill": {k: v for k, v in json.load(open(os.path.join(
                         a.work, f"distill_s{runs[0]['seed']}", "config.json")))["distill"].items() if k != "teacher"}},
        "wall_seconds_this_invocation": timings,  # a reused stage counts only its check
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out + ".tmp", "w") as f:
        from dermjax.cpu_env import machine

        result["machine"] = machine()
        json.dump(result, f, indent=2)
    os.replace(a.out + ".tmp", a.out)

    mean = lambda xs: sum(xs) / len(xs)
    for title, rows_of in (("last step", by), ("best validation step", {
            s: [r for r in val_selected if r["setting"] == s] for s in SETTINGS[1:]})):
        print(f"\nstudents at their {title}\n| setting | seeds | weighted F1 | balanced accuracy | P@5 |\n|---|---|---|---|---|")
        for s, rows in rows_of.items():
            cell = lambda k: f"{mean([r[k] for r in rows]):.3f} ({', '.join(f'{r[k]:.3f}' for r in rows)})"
            print(f"| {s} | {len(rows)} | {cell('weighted_f1')} | {cell('balanced_accuracy')} | {cell('p_at_5')} |")
    print(f"\ndistill beats paired_only on weighted F1 for every seed: {all(wins)}; wrote {a.out}")


if __name__ == "__main__":
    main()
