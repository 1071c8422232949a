"""bench/note_study.py end to end at toy scale (the synthetic set, a tiny model, a few steps):
every strategy trains and is scored with intervals, and a study stopped part-way reruns only
what is missing."""
import json
import os
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _study(work, data, out, *more):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    r = subprocess.run([sys.executable, "bench/note_study.py", "--work", str(work), "--source", "synthetic",
                        "--root", data, "--external", "none", "--strategies", "caption,template", "--seeds", "0",
                        "--config", "configs/note_study_cpu.py:tiny", "--steps", "4", "--bootstrap", "50",
                        "--out", str(out), *more], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return [line for line in r.stdout.splitlines() if line.startswith("$ ")]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from dermjax.data.synthetic import write_dataset

    root = str(tmp_path_factory.mktemp("syn"))
    write_dataset(root, 240, seed=1, image_size=32, progress=False)
    return root


def test_study_scores_every_strategy_and_reruns_only_what_is_missing(data, tmp_path):
    work, out = tmp_path / "work", tmp_path / "study.json"
    first = _study(work, data, out)
    assert sum("dermjax-train" in c for c in first) == 2 and sum("dermjax-eval" in c for c in first) == 2
    result = json.load(open(out))
    assert {(r["strategy"], r["benchmark"]) for r in result["runs"]} == {("caption", "synthetic-test"),
                                                                      ("template", "synthetic-test")}
    for r in result["runs"]:
        assert r["ci"]["weighted_f1"][0] <= r["weighted_f1"] <= r["ci"]["weighted_f1"][1]
        assert r["p_at_5"] is not None
        assert all(0.0 <= r["ci"][k][0] <= r["ci"][k][1] <= 1.0 for k in ("p_at_5", "p_at_10", "map"))
        assert f"--config.data.note_styles=('{r['strategy']}',)" in shlex.split(r["commands"]["train"])
    assert result["hallucination"]["template"]["kept"] == result["hallucination"]["template"]["records"]
    for row in result["summary"]:  # one seed: the mean interval is that seed's interval
        run = next(r for r in result["runs"] if (r["strategy"], r["benchmark"]) == (row["strategy"], row["benchmark"]))
        assert row["weighted_f1_ci"] == run["ci"]["weighted_f1"] and row["weighted_f1"] == run["weighted_f1"]
    assert len(result["verdict"]) == 1 and result["verdict"][0].startswith("synthetic-test: best mean weighted_f1 ")
    for png in ("study_scores.png", "study_hallucination.png"):
        assert open(tmp_path / png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    # The captions the caption strategy trained on are the label only.
    rows = [json.loads(l) for l in open(work / "notes_for_shards.jsonl")]
    caption = [n["text"] for n in rows[0]["notes"] if n["style"] == "caption"]
    assert caption and caption[0].startswith(("a dermoscopic image of", "a clinical image of", "an image of"))
    # Stopped after the template run trained but before it was scored: only that eval runs again.
    os.remove(work / "template_s0" / "eval" / "summary.csv")
    again = _study(work, data, out)
    ran = [c for c in again if "dermjax-train" in c or "dermjax-eval" in c]
    assert len(ran) == 1 and "dermjax-eval" in ran[0] and "template_s0" in ran[0]
    assert json.load(open(out))["runs"] == result["runs"]
