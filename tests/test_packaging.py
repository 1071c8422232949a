"""The package as a user installs it: declared dependencies, what the sdist and wheel carry, and
the installed commands run from outside the source tree with a config shipped inside the wheel."""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# import name -> distribution name, where they differ
DIST = {"PIL": "pillow", "absl": "absl-py", "array_record": "array-record", "orbax": "orbax-checkpoint",
        "tensorflow_datasets": "tensorflow-datasets", "sklearn": "scikit-learn"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(reqs: list[str]) -> set[str]:
    return {_norm(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in reqs}


def _imports(path: str) -> tuple[set[str], set[str]]:
    """(top-level third-party modules imported at module level, those imported inside functions)."""
    tree = ast.parse(open(path).read())
    top, local = set(), set()
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inner = {id(n) for f in funcs for n in ast.walk(f)}
    for n in ast.walk(tree):
        names = ([a.name for a in n.names] if isinstance(n, ast.Import)
                 else [n.module] if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module else [])
        for name in names:
            mod = name.split(".")[0]
            if mod in sys.stdlib_module_names or mod == "dermjax":
                continue
            (local if id(n) in inner else top).add(mod)
    return top, local


def test_every_import_is_declared():
    meta = tomllib.load(open(os.path.join(REPO, "pyproject.toml"), "rb"))["project"]
    required = _requirement_names(meta["dependencies"])
    optional = set().union(*(_requirement_names(v) for v in meta["optional-dependencies"].values()))
    missing = []
    for root, _, files in os.walk(os.path.join(REPO, "dermjax")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(root, f)
                top, local = _imports(path)
                rel = os.path.relpath(path, REPO)
                missing += [f"{rel}: {m} (module level)" for m in top if _norm(DIST.get(m, m)) not in required]
                missing += [f"{rel}: {m}" for m in local if _norm(DIST.get(m, m)) not in required | optional]
    assert not missing, "imported but not declared in pyproject.toml:\n" + "\n".join(sorted(missing))


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """sdist and wheel built from the tracked files alone (a clean checkout), without network."""
    tmp = tmp_path_factory.mktemp("pkg")
    src, out = tmp / "src", tmp / "dist"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in files.decode().split("\0"):
        if rel and os.path.isfile(os.path.join(REPO, rel)):
            os.makedirs(os.path.dirname(src / rel), exist_ok=True)
            with open(os.path.join(REPO, rel), "rb") as a, open(src / rel, "wb") as b:
                b.write(a.read())
    def build(kind, where):
        code = f"import sys; from setuptools import build_meta as b; print('BUILT', b.build_{kind}(sys.argv[1]))"
        r = subprocess.run([sys.executable, "-c", code, str(out)], cwd=where, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        return next(l for l in r.stdout.splitlines() if l.startswith("BUILT ")).split()[1]

    sdist = build("sdist", src)
    # The wheel is built from the unpacked sdist, as pip builds it: the sdist must be complete.
    with tarfile.open(out / sdist) as t:
        t.extractall(tmp / "unpacked", filter="data")
    wheel = build("wheel", tmp / "unpacked" / sdist[:-len(".tar.gz")])
    return tmp, str(out / sdist), str(out / wheel)


def test_sdist_carries_tests_data_constraints_and_launch(dists):
    _, sdist, _ = dists
    names = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    for needed in ("tests/conftest.py", "tests/helpers.py", "tests/test_packaging.py",
                   "tests/data/verifier_cases.jsonl", "constraints.txt", "LICENSE", "launch/setup_venv.sh",
                   "launch/test.sh", "configs/quickstart.py", "dermjax/data/_resample.c",
                   "dermjax/data/_resample_kernel.h", "docs/notes.md"):
        assert needed in names, f"{needed} is not in the sdist"
    assert not [n for n in names if n.endswith((".pyc", ".so"))]


def test_wheel_carries_configs_prompts_and_metadata(dists):
    _, _, wheel = dists
    z = zipfile.ZipFile(wheel)
    names = set(z.namelist())
    assert "dermjax/configs/quickstart.py" in names and "dermjax/configs/siglip_vit_b16.py" in names
    assert any(n.startswith("dermjax/eval/prompts/") and n.endswith(".json") for n in names)
    meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in meta and "Classifier: Intended Audience :: Science/Research" in meta
    for dep in ("msgpack", "absl-py", "etils", "ml_dtypes"):
        assert f"Requires-Dist: {dep}" in meta
    assert not [n for n in names if n.startswith("tests/")]


def test_installed_wheel_runs_the_quickstart_from_a_shipped_config(dists):
    """pip install of the wheel into a fresh venv (its dependencies come from the test's own
    environment through a .pth line, since nothing can be downloaded here), then the quickstart's
    stages from a directory outside the source tree with `--config quickstart:tiny`."""
    tmp, _, wheel = dists
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, "deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    # Without PYTHONPATH: a source tree on it would make pip see dermjax as installed already.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    r = subprocess.run([py, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    run_dir = tmp / "elsewhere"
    run_dir.mkdir()
    bin_ = venv / "bin"

    def cli(*args):
        p = subprocess.run([str(bin_ / args[0]), *args[1:]], cwd=run_dir, env=env, capture_output=True,
                           text=True, timeout=600)
        assert p.returncode == 0, f"{args} -> {p.returncode}\n{p.stdout[-1500:]}\n{p.stderr[-3000:]}"
        return p

    where = subprocess.run([py, "-c", "import dermjax; print(dermjax.__file__)"], cwd=run_dir, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(site), f"dermjax imported from {where}, not the installed wheel"

    # Every command's --help: its description and its own flags.
    for cmd, says in (("dermjax-train", ["Trains with the trainer", "--workdir", "--config", "quickstart"]),
                      ("dermjax-compile", ["Compiles a config's real train step", "--topology"]),
                      ("dermjax-eval", ["--workdir", "--bootstrap", "--verbosity"]),
                      ("dermjax-prep", ["synthetic", "notes", "shards", "--verbosity"]),
                      ("dermjax-export", ["--workdir", "--verbosity"])):
        out = cli(cmd, "--help").stdout
        assert all(s in out for s in says), f"{cmd} --help lacks one of {says}:\n{out}"

    cli("dermjax-prep", "synthetic", "--out", "data", "--n", "96", "--image-size", "48", "--workers", "1")
    cli("dermjax-prep", "notes", "--source", "synthetic", "--root", "data", "--out", "notes.jsonl")
    cli("dermjax-prep", "shards", "--source", "synthetic", "--root", "data", "--notes", "notes.jsonl",
        "--out", "shards", "--num-shards", "2", "--workers", "1")
    cli("dermjax-prep", "tokenizer", "--shards", "shards", "--vocab-size", "300")
    train = cli("dermjax-train", "--config", "quickstart:tiny", "--workdir", "train", "--config.data.shards=shards",
                "--verbosity=0")
    # --verbosity reaches absl logging (info lines from the libraries) instead of being overridden.
    assert re.search(r"^I\d{4} ", train.stderr, re.M), train.stderr[-2000:]
    cli("dermjax-eval", "--workdir", "train", "--shards", "shards", "--split", "test", "--no-probes", "--out", "eval")
    assert (run_dir / "eval" / "summary.csv").is_file()
    cli("dermjax-export", "--workdir", "train", "--out", "exported")
    cli("dermjax-export", "--workdir", "train", "--format", "timm", "--out", "exported-timm")
    timm_cfg = json.load(open(run_dir / "exported-timm" / "config.json"))
    assert timm_cfg["timm_kwargs"]["img_size"] == 32 and timm_cfg["pretrained_cfg"]["mean"] == [0.5, 0.5, 0.5]
    assert (run_dir / "train" / "config.json").is_file()
