"""Which notes teach a model the most? The research's comparison of note strategies on HAM10000.

    nice -n 10 python bench/note_study.py --work runs/note_study [--seeds 0,1,2]
        [--strategies caption,template,report,narrative,mix]
        [--llm-base-url URL --llm-model NAME --subset 2000]   # with llm, llm_unconstrained

Strategies (one training run per strategy and seed; the same model, steps and batch for all):
  caption            the class label only ("a dermoscopic image of melanoma."), no metadata
  template           metadata templates              report      a structured report
  narrative          free-text rule-based prose      llm         the LLM with the metadata, verified
  llm_unconstrained  the LLM without metadata, NOT verified (the hallucination control)
  mix                template, report, narrative and llm notes, sampled per step
Every strategy trains on the same shards (all styles' notes, `config.data.note_styles` picks);
records whose note of a style was rejected get an empty caption in that strategy, counted in
the output. LLM notes come from `launch/llm_server.sh` (or any OpenAI-compatible endpoint).
For the LLM strategies use --subset N: N HAM10000 images, whole lesions chosen by a hash of the
lesion id, the same N for every strategy.

Scores (`dermjax-eval --bootstrap`, 95% percentile intervals): zero-shot weighted F1, balanced
accuracy and macro AUROC, and image-to-note P@5/P@10/mAP, on the HAM10000 test split (by
lesion) and on the ISIC-archive subset (../shared/data/isic_archive_9class) with the images it
shares with the training split excluded (`--contamination exclude`). Plus the verifier's
report per style (the share of notes with a violation before and after verification, by field,
and the outcomes) and the generation throughput.

Resumable: every stage reuses its output when it matches (the stages' own checks; a finished
workdir; an eval JSON), and every command is printed as it runs. Output:
bench/results/note_study.json; workdirs under --work for later `dermjax-eval` runs.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import shlex
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BIN = os.path.dirname(sys.executable)
sys.path.insert(0, HERE)
from _run import run  # noqa: E402
STRATEGIES = {
    "caption": ("caption",),
    "template": ("template",),
    "report": ("report",),
    "narrative": ("narrative",),
    "llm": ("llm",),
    "llm_unconstrained": ("llm_unconstrained",),
    "mix": ("template", "report", "narrative", "llm"),
}
LLM_STYLES = ("llm", "llm_unconstrained")
ZERO_SHOT = ("weighted_f1", "balanced_accuracy", "macro_auroc")
RETRIEVAL = ("p_at_5", "p_at_10", "map")




def write_atomic(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


# --- data ------------------------------------------------------------------------------------

def subset_root(ham: str, n: int | None, work: str) -> str:
    """HAM10000 itself, or a copy of its metadata holding whole lesions (chosen by a hash of the
    lesion id) up to n images, beside a link to its image folder."""
    if not n:
        return ham
    rows = list(csv.DictReader(open(os.path.join(ham, "HAM10000_metadata.csv"), newline="")))
    order = sorted({r["lesion_id"] for r in rows}, key=lambda l: hashlib.sha256(l.encode()).hexdigest())
    by_lesion: dict[str, list] = {}
    for r in rows:
        by_lesion.setdefault(r["lesion_id"], []).append(r)
    keep = []
    for lesion in order:
        if len(keep) + len(by_lesion[lesion]) > n:
            break
        keep += by_lesion[lesion]
    root = os.path.join(work, f"ham10000_subset{n}")
    os.makedirs(root, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), lineterminator="\n")
    writer.writeheader()
    writer.writerows(keep)
    text = buf.getvalue()
    path = os.path.join(root, "HAM10000_metadata.csv")
    if not os.path.isfile(path) or open(path).read() != text:
        write_atomic(path, text)
    images = os.path.join(root, "images")
    if not os.path.islink(images):
        os.symlink(os.path.abspath(os.path.join(ham, "images")), images)
    return root


def training_notes(notes: str, out: str) -> dict:
    """The notes file the shards are written from: every kept note, plus llm_unconstrained notes
    the verifier rejected (that strategy is the unverified control). Returns counts per style."""
    counts: dict[str, dict] = {}
    lines = []
    for line in open(notes):
        row = json.loads(line)
        kept = list(row["notes"])
        for n in row.get("rejected", []):
            if n["style"] == "llm_unconstrained" and n.get("text"):
                kept.append({**n, "unverified": True})
        for n in row["notes"] + row.get("rejected", []):
            c = counts.setdefault(n["style"], {"records": 0, "with_note": 0})
            c["records"] += 1
        for n in kept:
            counts[n["style"]]["with_note"] += 1
        lines.append(json.dumps({**row, "notes": kept}, sort_keys=True) + "\n")
    text = "".join(lines)
    if not os.path.isfile(out) or open(out).read() != text:
        write_atomic(out, text)
    return counts


def isic_manifest(isic: str, out: str) -> str:
    """The ISIC-archive subset's labels.csv as an evaluation manifest (image_path,label)."""
    rows = list(csv.DictReader(open(os.path.join(isic, "labels.csv"), newline="")))
    text = "image_path,label,image_id\n" + "".join(
        f"{os.path.join(os.path.abspath(isic), r['path'])},{r['label']},{r['image_id']}\n" for r in rows)
    if not os.path.isfile(out) or open(out).read() != text:
        write_atomic(out, text)
    return out


# --- runs ------------------------------------------------------------------------------------

def figures(result: dict) -> dict:
    zs, ret = result["zero_shot"], result.get("retrieval", {})
    out = {"n": result["n"], **{k: zs[k] for k in ZERO_SHOT}, **{k: ret.get(k) for k in RETRIEVAL}}
    out["ci"] = {**({k: zs["ci"][k] for k in ZERO_SHOT} if "ci" in zs else {}),
                 **({k: ret["ci"][k] for k in RETRIEVAL} if "ci" in ret else {})}
    if "contamination" in result:
        out["excluded_as_shared_with_training"] = result["contamination"].get("excluded", 0)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default=os.path.join(REPO, "runs", "note_study"))
    ap.add_argument("--data-root", default=os.environ.get("DERMJAX_DATA_ROOT", os.path.join(REPO, "..", "shared", "data")))
    ap.add_argument("--source", default="ham10000", help="source adapter (synthetic: the test's small run)")
    ap.add_argument("--root", help="the source's folder (default: DATA_ROOT/ham10000)")
    ap.add_argument("--external", help="ISIC-archive subset folder (default: DATA_ROOT/isic_archive_9class; "
                                       "'none' to skip)")
    ap.add_argument("--strategies", default="caption,template,report,narrative,mix")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--subset", type=int, help="N HAM10000 images (whole lesions) for every strategy")
    ap.add_argument("--config", default="configs/note_study_cpu.py")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--llm-base-url")
    ap.add_argument("--llm-model")
    ap.add_argument("--llm-concurrency", type=int, default=2)
    ap.add_argument("--llm-cache", help="answer cache folder (default: WORK/notes.jsonl.llm-cache)")
    ap.add_argument("--extra", action="append", default=[], help="more --config.KEY=VALUE for every run")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "note_study.json"))
    a = ap.parse_args(argv)

    strategies = [s.strip() for s in a.strategies.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        print(f"error: unknown strategy {', '.join(unknown)}; known: {', '.join(STRATEGIES)}", file=sys.stderr)
        return 2
    styles = sorted({st for s in strategies for st in STRATEGIES[s]})
    if set(styles) & set(LLM_STYLES) and not (a.llm_base_url and a.llm_model):
        print("error: the llm strategies need --llm-base-url and --llm-model (start launch/llm_server.sh)",
              file=sys.stderr)
        return 2
    work = os.path.abspath(a.work)
    os.makedirs(work, exist_ok=True)
    log = os.path.join(work, "study.log")
    root = a.root or os.path.join(a.data_root, a.source)
    if a.source == "ham10000":
        root = subset_root(root, a.subset, work)

    # Notes of every style once; shards and a tokenizer shared by every strategy.
    notes = os.path.join(work, "notes.jsonl")
    cmd = [f"{BIN}/dermjax-prep", "notes", "--source", a.source, "--root", root, "--out", notes,
           "--styles", ",".join(styles)]
    if set(styles) & set(LLM_STYLES):
        cmd += ["--llm-base-url", a.llm_base_url, "--llm-model", a.llm_model,
                "--llm-concurrency", str(a.llm_concurrency)]
        if a.llm_cache:
            cmd += ["--llm-cache", a.llm_cache]
    commands = {"notes": cmd}
    t_notes = run(cmd, log)
    counts = training_notes(notes, os.path.join(work, "notes_for_shards.jsonl"))
    shards = os.path.join(work, "shards")
    commands["shards"] = [f"{BIN}/dermjax-prep", "shards", "--source", a.source, "--root", root, "--notes",
                          os.path.join(work, "notes_for_shards.jsonl"), "--out", shards, "--max-side", "128",
                          "--workers", "2"]
    run(commands["shards"], log)
    commands["tokenizer"] = [f"{BIN}/dermjax-prep", "tokenizer", "--shards", shards, "--vocab-size", "2000"]
    run(commands["tokenizer"], log)
    external = a.external or os.path.join(a.data_root, "isic_archive_9class")
    manifest = None
    if external != "none" and os.path.isdir(external):
        manifest = isic_manifest(external, os.path.join(work, "isic_archive.csv"))

    runs = []
    for strategy in strategies:
        for seed in [int(s) for s in a.seeds.split(",")]:
            name = f"{strategy}_s{seed}"
            workdir = os.path.join(work, name)
            train = [f"{BIN}/dermjax-train", "--config", a.config, "--workdir", workdir,
                     f"--config.data.shards={shards}", f"--config.seed={seed}", f"--config.total_steps={a.steps}",
                     f"--config.data.note_styles={tuple(STRATEGIES[strategy])!r}", *a.extra]
            if not os.path.isdir(os.path.join(workdir, "checkpoints", str(a.steps))):
                run(train, os.path.join(work, f"{name}.log"))
            out = os.path.join(workdir, "eval")
            evaluate = [f"{BIN}/dermjax-eval", "--workdir", workdir, "--shards", shards, "--split", "test",
                        "--no-probes", "--contamination", "exclude", "--bootstrap", str(a.bootstrap), "--out", out]
            if manifest:
                evaluate += ["--manifest", manifest, "--name", "isic_archive"]
            done = os.path.join(out, "summary.csv")
            if not os.path.isfile(done):
                run(evaluate, os.path.join(work, f"{name}.log"))
            results = {os.path.splitext(f)[0]: json.load(open(os.path.join(out, f)))
                       for f in sorted(os.listdir(out)) if f.endswith(".json") and f != "contamination.json"}
            for bench, r in results.items():
                runs.append({"strategy": strategy, "seed": seed, "benchmark": bench, **figures(r),
                             "commands": {"train": shlex.join(train), "eval": shlex.join(evaluate)}})

    report = json.load(open(notes + ".report.json"))
    result = {
        "runs": runs,
        "summary": summarize(runs),
        "hallucination": {style: {**report["styles"][style], "notes_used_in_training": counts.get(style)}
                          for style in styles if style in report["styles"]},
        "notes_seconds_this_invocation": round(t_notes, 1),
        "settings": {"strategies": {s: list(STRATEGIES[s]) for s in strategies}, "seeds": a.seeds,
                     "config": a.config, "steps": a.steps, "subset": a.subset, "source": a.source,
                     "bootstrap": a.bootstrap, "llm": {"base_url": a.llm_base_url, "model": a.llm_model},
                     "commands": {k: shlex.join(v) for k, v in commands.items()}},
    }
    from dermjax.cpu_env import machine

    result["machine"] = machine()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    result["verdict"] = verdict(result["summary"])
    write_atomic(a.out, json.dumps(result, indent=2))
    print(format_table(result["summary"]))
    print("\n".join(result["verdict"]))
    for png in plot(result, os.path.splitext(a.out)[0]):
        print(f"plot: {png}")
    print(f"wrote {a.out}")
    return 0


def plot(result: dict, stem: str) -> list[str]:
    """STEM_scores.png: weighted F1 and P@5 per strategy and benchmark (bar: the mean over seeds;
    dots: each seed; whiskers: each seed's bootstrap 95% interval). STEM_hallucination.png: the
    share of notes with a violation per style, before and after verification."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = list(dict.fromkeys(r["benchmark"] for r in result["runs"]))
    strategies = list(dict.fromkeys(r["strategy"] for r in result["runs"]))
    fig, axes = plt.subplots(len(benches), 2, figsize=(11, 3.2 * len(benches)), squeeze=False)
    for row, bench in enumerate(benches):
        for col, key in enumerate(("weighted_f1", "p_at_5")):
            ax = axes[row][col]
            for x, strategy in enumerate(strategies):
                runs = [r for r in result["runs"] if (r["benchmark"], r["strategy"]) == (bench, strategy)]
                values = [r[key] for r in runs if r.get(key) is not None]
                if not values:
                    continue
                ax.bar(x, sum(values) / len(values), color="#9ecae1", width=0.7)
                for j, r in enumerate(runs):
                    dx = (j - (len(runs) - 1) / 2) * 0.15
                    lo, hi = r["ci"].get(key, (r[key], r[key]))
                    ax.errorbar(x + dx, r[key], yerr=[[r[key] - lo], [hi - r[key]]], fmt="o", color="#08519c",
                                markersize=3, capsize=2, lw=1)
            ax.set_xticks(range(len(strategies)), strategies, rotation=30, ha="right", fontsize=8)
            ax.set_title(f"{bench}: {key.replace('_', ' ')}", fontsize=9)
    fig.tight_layout()
    paths = [stem + "_scores.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)
    styles = result.get("hallucination", {})
    if styles:
        fig, ax = plt.subplots(figsize=(6, 3))
        names = list(styles)
        for i, (when, color) in enumerate((("before", "#fc9272"), ("after", "#de2d26"))):
            ax.bar([x + (i - 0.5) * 0.38 for x in range(len(names))], [styles[n][when]["share"] for n in names],
                   width=0.38, color=color, label=f"{when} verification")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("notes with a violation")
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(stem + "_hallucination.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def summarize(runs: list[dict]) -> list[dict]:
    """Per strategy and benchmark: the mean over seeds of each figure, and the per-seed values."""
    rows = []
    for key in dict.fromkeys((r["strategy"], r["benchmark"]) for r in runs):
        group = [r for r in runs if (r["strategy"], r["benchmark"]) == key]
        row = {"strategy": key[0], "benchmark": key[1], "seeds": len(group)}
        for k in ZERO_SHOT + RETRIEVAL:
            values = [r[k] for r in group if r.get(k) is not None]
            row[k] = sum(values) / len(values) if values else None
            row[f"{k}_per_seed"] = values
            cis = [r["ci"][k] for r in group if r.get("ci", {}).get(k)]
            # The mean of the seeds' 95% bootstrap intervals: how far one run's figure moves with
            # the test images drawn; the seed spread is the training noise on top.
            row[f"{k}_ci"] = [sum(c[0] for c in cis) / len(cis), sum(c[1] for c in cis) / len(cis)] if cis else None
            row[f"{k}_seed_range"] = [min(values), max(values)] if values else None
        row["weighted_f1_ci_per_seed"] = [r["ci"].get("weighted_f1") for r in group if r.get("ci")]
        rows.append(row)
    return rows


def verdict(summary: list[dict], key: str = "weighted_f1") -> list[str]:
    """Per benchmark: the strategy with the best mean `key`, and which others it beats by more than
    the intervals (its mean above their interval and their mean below its interval)."""
    lines = []
    for bench in dict.fromkeys(r["benchmark"] for r in summary):
        rows = sorted((r for r in summary if r["benchmark"] == bench and r[key] is not None), key=lambda r: -r[key])
        if not rows or not rows[0].get(f"{key}_ci"):
            continue
        best = rows[0]
        lo, hi = best[f"{key}_ci"]
        clear = [r["strategy"] for r in rows[1:] if r.get(f"{key}_ci") and best[key] > r[f"{key}_ci"][1]
                 and r[key] < lo]
        within = [r["strategy"] for r in rows[1:] if r["strategy"] not in clear]
        lines.append(f"{bench}: best mean {key} {best['strategy']} {best[key]:.3f} ({lo:.3f}-{hi:.3f}); "
                     f"clearly above: {', '.join(clear) or 'none'}; within the intervals: {', '.join(within) or 'none'}")
    return lines


def format_table(summary: list[dict], keys=ZERO_SHOT + RETRIEVAL) -> str:
    """Mean over seeds with the mean 95% bootstrap interval in brackets."""
    names = {"weighted_f1": "weighted F1", "balanced_accuracy": "balanced acc.", "macro_auroc": "AUROC",
             "p_at_5": "P@5", "p_at_10": "P@10", "map": "mAP"}

    def cell(r, k):
        if r[k] is None:
            return "-"
        ci = r.get(f"{k}_ci")
        return f"{r[k]:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")

    lines = ["| benchmark | strategy | seeds | " + " | ".join(names[k] for k in keys) + " |",
             "|---|---|---|" + "---|" * len(keys)]
    for r in sorted(summary, key=lambda r: (r["benchmark"], -(r["weighted_f1"] or 0))):
        if all(r[k] is None for k in keys):
            continue
        lines.append(f"| {r['benchmark']} | {r['strategy']} | {r['seeds']} | " + " | ".join(cell(r, k) for k in keys) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
