"""Every stage through its command line, on a tiny synthetic set: the quickstart in miniature."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, check=True):
    p = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                       timeout=600)
    if check and p.returncode:
        raise AssertionError(f"{args} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return p


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    w = tmp_path_factory.mktemp("e2e")
    data, notes, shard_dir, train, ev = (str(w / x) for x in ("data", "notes.jsonl", "shards", "train", "eval"))
    run("dermjax.cli.prep", "synthetic", "--out", data, "--n", "160", "--image-size", "48", "--workers", "1")
    run("dermjax.cli.prep", "notes", "--source", "synthetic", "--root", data, "--out", notes)
    run("dermjax.cli.prep", "shards", "--source", "synthetic", "--root", data, "--notes", notes,
        "--out", shard_dir, "--num-shards", "2", "--workers", "1")
    run("dermjax.cli.prep", "tokenizer", "--shards", shard_dir, "--vocab-size", "300")
    train_out = run("dermjax.cli.train", "--config", "configs/quickstart.py:tiny", "--workdir", train,
                    f"--config.data.shards={shard_dir}")
    eval_out = run("dermjax.cli.evaluate", "--workdir", train, "--shards", shard_dir, "--split", "test",
                   "--out", ev)
    return dict(w=w, data=data, notes=notes, shards=shard_dir, train=train, eval=ev,
                train_out=train_out, eval_out=eval_out)


def test_every_stage_wrote_its_output(pipeline_run):
    r = pipeline_run
    rows = [json.loads(l) for l in open(r["notes"])]
    assert len(rows) == 160 and all(n["ok"] for row in rows for n in row["notes"])
    assert {n["style"] for row in rows for n in row["notes"]} == {"template", "report"}
    manifest = json.load(open(os.path.join(r["shards"], "manifest.json")))
    assert manifest["num_records"] == 160 and manifest["tokenizer"] == "tokenizer.model"
    assert sorted(os.listdir(os.path.join(r["train"], "checkpoints"))) == ["3", "6"]
    result = json.load(open(os.path.join(r["eval"], "synthetic-test.json")))
    assert result["n"] == manifest["splits"]["test"]["count"]
    for k in ("weighted_f1", "accuracy", "balanced_accuracy", "macro_auroc"):
        assert 0.0 <= result["zero_shot"][k] <= 1.0
    for k in ("p_at_5", "p_at_10", "map"):
        assert 0.0 <= result["retrieval"][k] <= 1.0
    # Chance for class-matching P@k: every note has its image's class, so sum of squared class shares.
    counts = np.array(list(manifest["splits"]["test"]["classes"].values()), float)
    assert result["retrieval"]["chance_p_at_k"] == pytest.approx(np.sum((counts / counts.sum()) ** 2), abs=1e-9)
    assert result["prompts"]["templates"]
    summary = list(csv.DictReader(open(os.path.join(r["eval"], "summary.csv"))))
    assert summary[0]["benchmark"] == "synthetic-test"
    report = open(os.path.join(r["eval"], "report.md")).read()
    assert "SYNTHETIC" in report and "| synthetic-test |" in report
    assert "report:" in r["eval_out"].stdout


def test_rerun_reuses_every_stage(pipeline_run):
    r = pipeline_run
    out = run("dermjax.cli.prep", "synthetic", "--out", r["data"], "--n", "160", "--image-size", "48").stdout
    assert "reusing" in out.lower()
    assert "reusing" in run("dermjax.cli.prep", "notes", "--source", "synthetic", "--root", r["data"],
                            "--out", r["notes"]).stdout
    assert "reusing" in run("dermjax.cli.prep", "shards", "--source", "synthetic", "--root", r["data"],
                            "--notes", r["notes"], "--out", r["shards"], "--num-shards", "2").stdout
    assert "reusing" in run("dermjax.cli.prep", "tokenizer", "--shards", r["shards"], "--vocab-size", "300").stdout
    again = run("dermjax.cli.train", "--config", "configs/quickstart.py:tiny", "--workdir", r["train"],
                f"--config.data.shards={r['shards']}")
    assert "training already complete: step 6" in again.stdout


def test_manifest_benchmark_and_bad_input(pipeline_run, tmp_path):
    r = pipeline_run
    # the synthetic set doubles as a bring-your-own manifest (docs/formats.md section 6)
    run("dermjax.cli.evaluate", "--workdir", r["train"], "--manifest",
              os.path.join(r["data"], "manifest.csv"), "--name", "byo", "--out", str(tmp_path / "ev"))
    assert json.load(open(tmp_path / "ev" / "byo.json"))["n"] == 160
    bad = tmp_path / "bad.csv"
    bad.write_text("image_path,diagnosis\na.jpg,melanoma\n")
    p = run("dermjax.cli.evaluate", "--workdir", r["train"], "--manifest", str(bad), "--out",
            str(tmp_path / "ev2"), check=False)
    assert p.returncode != 0
    assert p.stderr.strip().splitlines() == [f"error: {bad}: missing required column(s) label"]
    assert not os.path.exists(tmp_path / "ev2")


def test_missing_data_root_is_one_line(tmp_path):
    missing = str(tmp_path / "nowhere")
    p = run("dermjax.cli.prep", "notes", "--source", "ham10000", "--root", missing,
            "--out", str(tmp_path / "n.jsonl"), check=False)
    assert p.returncode != 0
    assert p.stderr.strip().splitlines() == [f"error: {missing}: data root does not exist"]
    assert not os.path.exists(tmp_path / "n.jsonl")
