"""`dermjax-prep notes|shards --runner beam` (Apache Beam, DirectRunner) writes what the local
runner writes: the same bytes in every shard, stats file, manifest and notes file, compared record
by record; bad images, failures in workers and reruns behave as on the local path."""
from __future__ import annotations

import filecmp
import json
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("apache_beam", reason="the beam extra is not installed (pip install 'dermjax[beam]')")

from dermjax.core.errors import DermjaxError, TemporaryError  # noqa: E402
from dermjax.data import beam_prep, shards  # noqa: E402
from dermjax.data.sources import load_records  # noqa: E402
from dermjax.notes import llm  # noqa: E402
from dermjax.notes import synthesize as synth  # noqa: E402
from tests.helpers import tiny_notes, tiny_records  # noqa: E402
from tests.test_llm import KEY, FakeLLM  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Two worker threads: bundles run concurrently and finish in any order, as on a cluster.
TWO_WORKERS = "--runner=DirectRunner --direct_num_workers=2 --direct_running_mode=multi_threading"
SETTINGS = dict(num_shards=3, max_side=24, split_seed=0, source={"name": "tiny"})


def same_tree(a: str, b: str) -> list[str]:
    """Every file of `a` and `b`, compared byte for byte; returns the names compared."""
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b))
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors, (mismatch, errors)
    return names


def same_records(a: str, b: str) -> int:
    n = 0
    for split in shards.SPLITS:
        left, right = shards.read_split(a, split), shards.read_split(b, split)
        assert [ex["image_id"] for ex in left] == [ex["image_id"] for ex in right]
        for x, y in zip(left, right):
            assert x == y, x["image_id"]
            n += 1
    return n


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("tiny"))
    records = tiny_records(os.path.join(folder, "images"), n=40, size=32, patients=17)
    return records, tiny_notes(records)


def test_shards_on_beam_equal_the_local_runner(tiny, tmp_path):
    records, notes = tiny
    local = str(tmp_path / "local")
    beam = str(tmp_path / "beam")
    shards.write_shards(records, notes, local, workers=1, progress=False, **SETTINGS)
    beam_prep.write_shards(records, notes, beam, beam_options=TWO_WORKERS, progress=False, **SETTINGS)
    names = same_tree(local, beam)  # every shard, stats file and manifest.json: the same bytes
    assert sum(n.endswith(".array_record") for n in names) >= 3 and "manifest.json" in names
    assert same_records(local, beam) == len(records)
    assert not os.path.exists(os.path.join(beam, ".beam"))  # staging removed once complete
    # The runner is not part of the settings: each reuses the other's output.
    assert shards.write_shards(records, notes, beam, workers=1, progress=False, **SETTINGS) == shards.load_manifest(local)


def test_beam_rerun_rewrites_only_what_is_missing(tiny, tmp_path, capsys):
    records, notes = tiny
    out = str(tmp_path / "beam")
    beam_prep.write_shards(records, notes, out, progress=False, **SETTINGS)
    beam_prep.write_shards(records, notes, out, progress=True, **SETTINGS)
    assert "reusing" in capsys.readouterr().out
    files = sorted(f for f in os.listdir(out) if f.endswith(".array_record"))
    os.remove(os.path.join(out, files[1]))
    before = {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in files if f != files[1]}
    beam_prep.write_shards(records, notes, out, progress=True, **SETTINGS)
    assert f"1 of {len(files)} shards to write" in capsys.readouterr().out
    assert before == {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in before}
    assert shards.verify_shards(out)["problems"] == []


def test_bad_images_on_beam_as_on_the_local_path(tiny, tmp_path):
    records, notes = tiny
    bad = [dict(r) for r in records]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    bad[5]["image_path"] = str(broken)
    with pytest.raises(DermjaxError) as local_err:
        shards.write_shards(bad, notes, str(tmp_path / "l_err"), progress=False, **SETTINGS)
    with pytest.raises(DermjaxError) as beam_err:
        beam_prep.write_shards(bad, notes, str(tmp_path / "b_err"), progress=False, **SETTINGS)
    assert str(beam_err.value) == str(local_err.value)
    assert "broken.jpg" in str(beam_err.value) and "source record 5" in str(beam_err.value)
    assert not os.path.exists(tmp_path / "b_err" / "manifest.json")
    skip = dict(SETTINGS, on_bad_image="skip")
    shards.write_shards(bad, notes, str(tmp_path / "l_skip"), progress=False, **skip)
    manifest = beam_prep.write_shards(bad, notes, str(tmp_path / "b_skip"), progress=False, **skip)
    assert [s["image_id"] for s in manifest["skipped"]] == [records[5]["image_id"]]
    same_tree(str(tmp_path / "l_skip"), str(tmp_path / "b_skip"))
    # The stale failure of the first run does not stop a run after the image was fixed.
    manifest = beam_prep.write_shards(records, notes, str(tmp_path / "b_err"), progress=False, **SETTINGS)
    assert manifest["skipped"] == [] and sum(s["count"] for s in manifest["splits"].values()) == len(records)


def test_images_and_shards_on_object_storage(tiny, tmp_path):
    """Images read from, and shards written to, URLs (fsspec's memory:// stands in for gs://)."""
    fsspec = pytest.importorskip("fsspec")
    records, notes = tiny
    mem = fsspec.filesystem("memory")
    remote = []
    for r in records:
        url = f"memory://bucket/images/{r['image_id']}.jpg"
        mem.pipe_file(url.removeprefix("memory://"), open(r["image_path"], "rb").read())
        remote.append(dict(r, image_path=url))
    local = str(tmp_path / "local")
    shards.write_shards(records, notes, local, progress=False, **SETTINGS)
    # In-process runner: memory:// is per process.
    beam_prep.write_shards(remote, notes, "memory://bucket/shards", progress=False,
                           beam_options="--runner=DirectRunner", **SETTINGS)
    manifest = json.loads(mem.cat_file("bucket/shards/manifest.json"))
    for split, info in manifest["splits"].items():
        for s in info["shards"]:
            with open(os.path.join(local, s["file"]), "rb") as f:
                assert mem.cat_file(f"bucket/shards/{s['file']}") == f.read(), s["file"]
    assert not mem.exists("bucket/shards/.beam")
    mem.rm("bucket", recursive=True)


def test_notes_on_beam_equal_the_local_runner(tmp_path):
    from dermjax.data.synthetic import write_dataset

    root = str(tmp_path / "syn")
    write_dataset(root, 30, seed=1, image_size=16, progress=False)
    records = load_records("synthetic", root)
    styles = ["template", "report", "narrative", "caption"]
    settings = {"source": "synthetic", "styles": styles, "seed": 0}
    local, beam = str(tmp_path / "local.jsonl"), str(tmp_path / "beam.jsonl")
    synth.write_notes(records, local, styles, settings, progress=False)
    summary = beam_prep.write_notes(records, beam, styles, settings, chunk=7, beam_options=TWO_WORKERS,
                                    progress=False)
    assert summary["rows"] == len(records) and summary["failed_requests"] == 0
    for suffix in ("", ".report.json", ".meta.json"):
        with open(local + suffix, "rb") as a, open(beam + suffix, "rb") as b:
            assert a.read() == b.read(), suffix
    assert not os.path.exists(beam + ".beam")
    # Same settings: either runner reuses the other's finished output.
    assert synth.write_notes(records, beam, styles, settings, progress=False)["reused"]


def test_llm_notes_on_beam_stop_and_resume_like_the_local_path(tmp_path):
    from dermjax.data.synthetic import write_dataset

    root = str(tmp_path / "syn")
    write_dataset(root, 12, seed=3, image_size=16, progress=False)
    records = load_records("synthetic", root)
    server = FakeLLM(records)
    try:
        config = llm.resolve_config(server.url, "fake-model", KEY, timeout=5.0, retries=0, concurrency=1,
                                    backoff=0.01)
        styles = ["template", "llm"]
        settings = {"styles": styles}
        out = str(tmp_path / "notes.jsonl")
        late = {r["image_id"] for r in records[8:]}
        # The endpoint goes down for the last chunk's records: that chunk fails, the others finish.
        server.respond = lambda info: (("status", 500, {}) if info["record"]["image_id"] in late
                                       else server.faithful(info))
        with pytest.raises(TemporaryError, match="in a row failed"):
            beam_prep.write_notes(records, out, styles, settings, llm_config=config, cache_dir=str(tmp_path / "c"),
                                  chunk=4, progress=False)
        assert not os.path.exists(out)
        server.respond = server.faithful
        sent = len(server.log)
        summary = beam_prep.write_notes(records, out, styles, settings, llm_config=config,
                                        cache_dir=str(tmp_path / "c"), chunk=4, progress=False)
        assert summary["resumed"] == 8 and summary["failed_requests"] == 0
        assert {e["image_id"] for e in server.log[sent:]} == late
        kept = [n for row in map(json.loads, open(out)) for n in row["notes"] if n["style"] == "llm"]
        assert len(kept) == len(records)
    finally:
        server.close()


def test_cli_runner_beam(tmp_path):
    from dermjax.data.synthetic import write_dataset

    root = str(tmp_path / "syn")
    write_dataset(root, 24, seed=2, image_size=16, progress=False)

    def prep(*args):
        return subprocess.run([sys.executable, "-m", "dermjax.cli.prep", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=300)

    outs = {}
    for runner in ("local", "beam"):
        notes = str(tmp_path / f"{runner}.jsonl")
        p = prep("notes", "--source", "synthetic", "--root", root, "--out", notes, "--runner", runner)
        assert p.returncode == 0, p.stderr
        outs[runner] = str(tmp_path / f"{runner}_shards")
        p = prep("shards", "--source", "synthetic", "--root", root, "--notes", notes, "--out", outs[runner],
                 "--num-shards", "2", "--max-side", "16", "--runner", runner)
        assert p.returncode == 0, p.stderr
    assert same_records(outs["local"], outs["beam"]) == 24
    p = prep("shards", "--source", "synthetic", "--root", root, "--notes", str(tmp_path / "beam.jsonl"),
             "--out", str(tmp_path / "x"), "--runner", "beam", "--beam-options=--direct_num_wrkers=2")
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == (
        "error: --beam-options: unknown option(s) --direct_num_wrkers"), p.stderr


def doc_option_strings() -> list[str]:
    """Every --beam-options string in docs/beam.md and the README, continuation lines joined."""
    found = []
    for name in ("docs/beam.md", "README.md"):
        text = open(os.path.join(REPO, name)).read().replace("\\\n", " ")
        found += [" ".join(m.split()) for m in re.findall(r'--beam-options="([^"]+)"', text)]
    return found


def test_documented_beam_options_parse():
    """The Dataflow, Flink and Spark commands in the docs hold only options Beam knows."""
    strings = doc_option_strings()
    runners = {re.search(r"--runner=(\w+)", s).group(1) for s in strings}
    assert {"DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner"} <= runners
    for s in strings:
        beam_prep._options(s)  # raises on an unknown option
    with pytest.raises(DermjaxError, match="unknown option"):
        beam_prep._options("--runner=DataflowRunner --temp_locaton=gs://b/tmp")
