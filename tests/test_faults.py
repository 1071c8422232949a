"""Fault injection in one place: a stage killed with SIGKILL at random points, then rerun with
the same settings, changed settings or changed inputs, must give exactly what an uninterrupted
run with the final settings and inputs gives, record for record; nothing already written may be
reused when it no longer matches. Plus the damage a rerun has to notice."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from dermjax.data import shards

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _prep(*args, check=True):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-m", "dermjax.cli.prep", *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    if check and r.returncode:
        raise AssertionError(f"dermjax-prep {' '.join(args)} exited {r.returncode}: {r.stderr[-1500:]}")
    return r


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    data, notes = str(root / "data"), str(root / "notes.jsonl")
    _prep("synthetic", "--out", data, "--n", "160")
    _prep("notes", "--source", "synthetic", "--root", data, "--out", notes, "--styles", "template")
    return data, notes


def _shards_args(data, notes, out, max_side):
    return ["shards", "--source", "synthetic", "--root", data, "--notes", notes, "--out", out,
            "--num-shards", "8", "--max-side", str(max_side)]


def _killed_run(args, out, seed):
    """Starts `dermjax-prep shards` and SIGKILLs it once `k` shards (random) are complete, or
    mid-way through writing one."""
    k = random.Random(seed).randint(0, 6)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    p = subprocess.Popen([sys.executable, "-m", "dermjax.cli.prep", *args], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        done = [f for f in os.listdir(out)] if os.path.isdir(out) else []
        if sum(f.endswith(".array_record.json") for f in done) >= k:
            break
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    return k


def _content(out) -> dict:
    """Every written record, split by split, sorted by id: what a reader can ever see."""
    m = shards.load_manifest(out)
    result = {"counts": {s: v["count"] for s, v in m["splits"].items()}}
    for split in shards.SPLITS:
        rows = sorted(shards.read_split(out, split), key=lambda ex: ex["image_id"])
        result[split] = [(ex["image_id"], ex["image"], json.dumps(ex["notes"], sort_keys=True), ex["record"],
                          ex["split"]) for ex in rows]
    return result


def _assert_same(out, reference):
    got, want = _content(out), _content(reference)
    assert got["counts"] == want["counts"]
    for split in shards.SPLITS:
        assert [r[0] for r in got[split]] == [r[0] for r in want[split]], split
        assert got[split] == want[split], split
    v = shards.verify_shards(out, decode_images=False)
    assert not v["problems"], v["problems"][:3]


@pytest.mark.parametrize("seed", [0, 1])
def test_shards_killed_then_rerun_with_the_same_settings(source, tmp_path, seed):
    data, notes = source
    reference = str(tmp_path / "reference")
    _prep(*_shards_args(data, notes, reference, 64))
    out = str(tmp_path / "out")
    _killed_run(_shards_args(data, notes, out, 64), out, seed)
    _prep(*_shards_args(data, notes, out, 64))
    _assert_same(out, reference)


def test_shards_killed_then_rerun_with_other_settings(source, tmp_path):
    """The issue's case: a --max-side 128 run killed, rerun with --max-side 48; no 128 px shard
    may survive under a manifest that says 48."""
    data, notes = source
    reference = str(tmp_path / "reference")
    _prep(*_shards_args(data, notes, reference, 48))
    out = str(tmp_path / "out")
    _killed_run(_shards_args(data, notes, out, 128), out, seed=3)
    _prep(*_shards_args(data, notes, out, 48))
    _assert_same(out, reference)


def test_shards_stopped_on_a_bad_image_then_rerun_after_the_metadata_is_fixed(source, tmp_path):
    """The issue's other case: a run stops on an unreadable image; the user removes that record
    from the metadata as the error invites and reruns. Every shard whose records changed is
    written again: no record twice, none missing."""
    data, notes = source
    work = str(tmp_path / "data")
    shutil.copytree(data, work)
    rows = [json.loads(l) for l in open(os.path.join(work, "records.jsonl"))]
    bad = rows[30]  # an early record: shards written before the stop change when it goes
    with open(os.path.join(work, bad["image_path"]), "wb") as f:
        f.write(b"not a jpeg")
    out = str(tmp_path / "out")
    _killed_run(_shards_args(work, notes, out, 64), out, seed=5)
    r = _prep(*_shards_args(work, notes, out, 64), check=False)
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and "Traceback" not in r.stderr
    assert f"image_id '{bad['image_id']}'" in r.stderr.split("error:")[1].splitlines()[0]
    with open(os.path.join(work, "records.jsonl"), "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows if row["image_id"] != bad["image_id"])
    _prep(*_shards_args(work, notes, out, 64))
    reference = str(tmp_path / "reference")
    _prep(*_shards_args(work, notes, reference, 64))
    _assert_same(out, reference)
    assert sum(_content(out)["counts"].values()) == len(rows) - 1


def test_shards_rerun_after_the_notes_changed(source, tmp_path):
    data, notes = source
    out = str(tmp_path / "out")
    _prep(*_shards_args(data, notes, out, 64))
    changed = str(tmp_path / "notes.jsonl")
    rows = [json.loads(l) for l in open(notes)]
    for row in rows[::7]:
        row["notes"][0]["text"] += " Reviewed."
    with open(changed, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    before = {n: os.path.getmtime(os.path.join(out, n)) for n in os.listdir(out) if n.endswith(".array_record")}
    _prep(*_shards_args(data, changed, out, 64))
    reference = str(tmp_path / "reference")
    _prep(*_shards_args(data, changed, reference, 64))
    _assert_same(out, reference)
    after = {n: os.path.getmtime(os.path.join(out, n)) for n in before}
    assert any(before[n] != after[n] for n in before)  # the shards holding changed notes were rewritten
    r = _prep(*_shards_args(data, changed, out, 64))
    assert "reusing" in r.stdout  # and an unchanged rerun reuses everything


def test_verify_checks_ids_and_counts_against_the_manifest(source, tmp_path):
    data, notes = source
    out = str(tmp_path / "out")
    _prep(*_shards_args(data, notes, out, 64))
    m = json.load(open(os.path.join(out, shards.MANIFEST)))
    train = m["splits"]["train"]["shards"]
    # a shard swapped for another one with the same number of records
    a, b = train[0], train[1]
    if a["count"] == b["count"]:
        a["image_ids"], b["image_ids"] = b["image_ids"], a["image_ids"]
    else:
        a["image_ids"] = list(reversed(a["image_ids"]))
    # and one record listed twice
    train[2]["image_ids"][0] = train[3]["image_ids"][0]
    with open(os.path.join(out, shards.MANIFEST), "w") as f:
        json.dump(m, f)
    r = _prep("verify", "--shards", out, "--no-images", check=False)
    assert r.returncode == 2
    problems = [l for l in r.stdout.splitlines() if l.startswith("problem:")]
    assert any("manifest.json says" in l and a["file"] in l for l in problems)
    assert any("is also in" in l for l in problems)


# --- checkpoints -----------------------------------------------------------------------------

from tests.helpers import tiny_shard_dir  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run with checkpoints at steps 3 and 6."""
    from configs.quickstart import get_config
    from dermjax.train import contrastive

    root = tmp_path_factory.mktemp("ckpt")
    shard_dir, _ = tiny_shard_dir(root, n=48)
    cfg = get_config("tiny")
    cfg.data.shards = shard_dir
    cfg.data.tokenizer = os.path.join(shard_dir, "tokenizer.model")
    cfg.keep_checkpoints = 3
    work = str(root / "work")
    contrastive.train(cfg, work)
    assert sorted(os.listdir(os.path.join(work, "checkpoints"))) == ["3", "6"]
    return cfg, work


def _damage(step_dir: str, how: str) -> str:
    state = os.path.join(step_dir, "state")
    if how == "data file":  # as in the issue: one file under state/d/
        victim = os.path.join(state, "d", sorted(os.listdir(os.path.join(state, "d")))[0])
    else:
        victim = os.path.join(state, {"metadata": "_METADATA", "manifest": "manifest.ocdbt"}[how])
    os.remove(victim)
    return victim


def _evaluate(work, out):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    return subprocess.run([sys.executable, "-m", "dermjax.cli.evaluate", "--workdir", work,
                           "--manifest", os.path.join(os.path.dirname(work), "shards", "..", "images_manifest.csv"),
                           "--out", out], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("how", ["data file", "metadata", "manifest"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_readable_one(trained, tmp_path, how, capsys):
    """dermjax-eval and a resumed dermjax-train both warn in one line naming the damaged
    checkpoint and use step 3; training moves step 6 aside and trains on to the end."""
    from dermjax.eval.evaluate import Embedder
    from dermjax.train import contrastive

    cfg, work = trained
    copy = str(tmp_path / "work")
    shutil.copytree(work, copy)
    _damage(os.path.join(copy, "checkpoints", "6"), how)
    emb = Embedder.from_workdir(copy)
    assert emb.step == 3
    warned = [l for l in capsys.readouterr().err.splitlines() if l.startswith("warning:")]
    assert len(warned) == 1 and "/checkpoints/6: checkpoint cannot be read" in warned[0] and "using step 3" in warned[0]
    out = contrastive.train(cfg, copy)
    assert out["complete"] and out["step"] == 6
    names = sorted(os.listdir(os.path.join(copy, "checkpoints")))
    assert names[:2] == ["3", "6"] and names[2].startswith("6.damaged-")


def test_no_readable_checkpoint_is_one_line_and_status_2(trained, tmp_path):
    _, work = trained
    copy = str(tmp_path / "work")
    shutil.copytree(work, copy)
    for step in ("3", "6"):
        _damage(os.path.join(copy, "checkpoints", step), "metadata")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-m", "dermjax.cli.export", "--workdir", copy, "--out", str(tmp_path / "x")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "no readable checkpoint (steps 6, 3 are damaged)" in errors[0]
    assert "Traceback" not in r.stderr
