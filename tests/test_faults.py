"""Fault injection in one place: a stage killed with SIGKILL at random points, then rerun with
the same settings, changed settings or changed inputs, must give exactly what an uninterrupted
run with the final settings and inputs gives, record for record; nothing already written may be
reused when it no longer matches. Plus the damage (corrupt bytes) a rerun has to notice.

Stages: notes, shards, tokenizer, train (checkpoints), eval and export. Two more cases live
beside the code they exercise: tests/test_train.py (kill -9 after a checkpoint, resume bitwise
identical; SIGTERM) and tests/test_llm.py (an LLM notes run killed midway, torn partial file)."""
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


def _killed_at(target: str, after: int, cli: str, *args) -> subprocess.CompletedProcess:
    """Runs `python -m cli args` with SIGKILL sent to itself on call `after` + 1 of `target`
    ("module:attr" or "module:Class.method"): a kill at a chosen point, not a racing timer."""
    module, attr = target.split(":")
    code = (
        "import importlib, os, signal\n"
        f"owner = importlib.import_module({module!r})\n"
        f"*path, name = {attr!r}.split('.')\n"
        "for p in path: owner = getattr(owner, p)\n"
        "real, calls = getattr(owner, name), [0]\n"
        "def wrapped(*a, **k):\n"
        f"    if calls[0] == {after}: os.kill(os.getpid(), signal.SIGKILL)\n"
        "    calls[0] += 1\n"
        "    return real(*a, **k)\n"
        "setattr(owner, name, wrapped)\n"
        f"importlib.import_module({cli!r}).main({list(args)!r})\n")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == -signal.SIGKILL, f"not killed ({r.returncode}): {r.stderr[-1500:]}"
    return r


def _flip_byte(path: str, at: float = 0.5) -> None:
    with open(path, "r+b") as f:
        f.seek(int(os.path.getsize(path) * at))
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))


# --- notes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1])
def test_notes_killed_then_rerun_equals_an_uninterrupted_run(source, tmp_path, seed):
    data, reference = source  # written in one go by the fixture
    out = str(tmp_path / "notes.jsonl")
    args = ["notes", "--source", "synthetic", "--root", data, "--out", out, "--styles", "template"]
    k = random.Random(seed).randint(1, 150)
    _killed_at("dermjax.notes.synthesize:_PartialFile.append", k, "dermjax.cli.prep", *args)
    assert not os.path.exists(out) and len(open(out + ".partial").read().splitlines()) == k + 1  # header + k rows
    r = _prep(*args)
    assert f"({k} resumed from an earlier run)" in r.stdout
    assert open(out, "rb").read() == open(reference, "rb").read()
    # Corrupt bytes in the finished file: the next run notices and writes it again.
    _flip_byte(out)
    assert "reusing" not in _prep(*args).stdout
    assert open(out, "rb").read() == open(reference, "rb").read()
    assert "reusing" in _prep(*args).stdout


def test_notes_made_by_other_code_are_neither_reused_nor_resumed(source, tmp_path):
    """The note makers and the verifier are part of the settings (a changed rule gives other
    notes and other verdicts): a finished or partial output from other code is written anew."""
    data, reference = source
    out = str(tmp_path / "notes.jsonl")
    args = ["notes", "--source", "synthetic", "--root", data, "--out", out, "--styles", "template"]
    assert "reusing" in _prep(*args[:6], reference, *args[7:]).stdout  # same code: reused
    other_code = ("import sys; from dermjax.cli import prep; prep.notes_code_digest = lambda: 'other'; "
                  "sys.exit(prep.main(sys.argv[1:]))")

    def prep_other(*a):
        return subprocess.run([sys.executable, "-c", other_code, *a], cwd=ROOT, capture_output=True,
                              text=True, timeout=600, env={**os.environ, "JAX_PLATFORMS": "cpu"})

    _killed_at("dermjax.notes.synthesize:_PartialFile.append", 20, "dermjax.cli.prep", *args)
    r = prep_other(*args)
    assert r.returncode == 0, r.stderr
    assert "resumed" not in r.stdout and "reusing" not in r.stdout
    assert "reusing" in prep_other(*args).stdout
    assert "reusing" not in _prep(*args).stdout  # back to this code: written anew
    assert open(out, "rb").read() == open(reference, "rb").read()


# --- tokenizer -------------------------------------------------------------------------------

def test_tokenizer_killed_or_damaged_then_rerun_equals_an_uninterrupted_run(source, tmp_path):
    data, notes = source
    reference, out = str(tmp_path / "reference"), str(tmp_path / "out")
    for d in (reference, out):
        _prep(*_shards_args(data, notes, d, 32))
    _prep("tokenizer", "--shards", reference, "--vocab-size", "200")
    want = open(os.path.join(reference, "tokenizer.model"), "rb").read()
    # Killed after the model file is written but before the manifest names it.
    _killed_at("dermjax.cli.prep:write_json", 0, "dermjax.cli.prep", "tokenizer", "--shards", out,
               "--vocab-size", "200")
    assert shards.load_manifest(out)["tokenizer"] is None
    assert "reusing" not in _prep("tokenizer", "--shards", out, "--vocab-size", "200").stdout
    model = os.path.join(out, "tokenizer.model")
    assert open(model, "rb").read() == want
    _flip_byte(model, 0.3)
    r = subprocess.run([sys.executable, "-m", "dermjax.cli.train", "--config", "configs/quickstart.py:tiny",
                        "--workdir", str(tmp_path / "w"), f"--config.data.shards={out}",
                        f"--config.data.tokenizer={model}"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1 and model in errors[0], r.stderr[-1500:]
    assert "reusing" not in _prep("tokenizer", "--shards", out, "--vocab-size", "200").stdout
    assert open(model, "rb").read() == want


def test_printed_counts_are_written_counts_when_images_are_skipped(source, tmp_path):
    """Issue 15: `--on-bad-image skip` printed "70 examples" when 67 were written."""
    data, notes = source
    work = str(tmp_path / "data")
    shutil.copytree(data, work)
    rows = [json.loads(l) for l in open(os.path.join(work, "records.jsonl"))]
    for row in rows[10:13]:
        with open(os.path.join(work, row["image_path"]), "wb") as f:
            f.write(b"not a jpeg")
    out = str(tmp_path / "out")
    r = _prep(*_shards_args(work, notes, out, 32), "--on-bad-image", "skip")
    written = sum(len(shards.read_split(out, split)) for split in shards.SPLITS)
    assert written == len(rows) - 3
    assert f"shards: {written} examples written of {len(rows)} records (3 unreadable images skipped)" in r.stdout


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


# --- eval and export -------------------------------------------------------------------------

def _run(cli, *args, check=True):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    r = subprocess.run([sys.executable, "-m", cli, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    if check and r.returncode:
        raise AssertionError(f"{cli} {' '.join(args)} exited {r.returncode}: {r.stderr[-1500:]}")
    return r


def _files(folder, ends=(".json", ".csv", ".md", ".safetensors", ".model")) -> dict:
    """Every output by name; the report names its own folder, which is not content."""
    read = lambda n: open(os.path.join(folder, n), "rb").read().replace(str(folder).encode(), b"OUT")
    return {n: read(n) for n in sorted(os.listdir(folder)) if n.endswith(ends)}


def test_eval_killed_while_writing_then_rerun_equals_an_uninterrupted_run(trained, tmp_path):
    _, work = trained
    shard_dir = os.path.join(os.path.dirname(work), "shards")
    args = lambda out, *more: ["--workdir", work, "--shards", shard_dir, "--no-probes", "--out", out, *more]
    reference, out = str(tmp_path / "reference"), str(tmp_path / "out")
    _run("dermjax.cli.evaluate", *args(reference))
    _run("dermjax.cli.evaluate", *args(out, "--checkpoint", os.path.join(work, "checkpoints", "3"))[2:])
    before = _files(out)
    _killed_at("dermjax.eval.evaluate:write_json", 0, "dermjax.cli.evaluate", *args(out))
    assert _files(out) == before  # the earlier run's outputs are untouched, not half-replaced
    _run("dermjax.cli.evaluate", *args(out))
    assert _files(out) == _files(reference) != before


def test_export_killed_or_damaged_is_never_taken_for_a_complete_export(trained, tmp_path):
    from dermjax.core.errors import DermjaxError
    from dermjax.models import export

    _, work = trained
    reference, out = str(tmp_path / "reference"), str(tmp_path / "out")
    _run("dermjax.cli.export", "--workdir", work, "--out", reference)
    _run("dermjax.cli.export", "--workdir", work, "--step", "3", "--out", out)
    # Killed over an older export after the new weights are in place, before its config.json.
    _killed_at("dermjax.models.export:write_json", 0, "dermjax.cli.export", "--workdir", work, "--out", out)
    with pytest.raises(DermjaxError, match="config.json"):
        export.load(out)
    _run("dermjax.cli.export", "--workdir", work, "--out", out)
    assert _files(out) == _files(reference)
    assert export.load(out)[2]["step"] == 6
    _flip_byte(os.path.join(out, "model.safetensors"), 0.9)  # inside the weights, not the header
    with pytest.raises(DermjaxError, match=r"model.safetensors: missing or changed since it was exported"):
        export.load(out)
