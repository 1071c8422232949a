"""dermjax-compile: every accelerator config, reduced, compiled for a 4-chip TPU topology on this
CPU host (libtpu's compile-only backend, the tpu-compile extra), and the HLO accounting it
reports (collectives, FLOPs with scanned loops, replica groups)."""
import json
import os
import subprocess
import sys

import pytest

from dermjax.aot import hlo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
libtpu = pytest.importorskip("libtpu", reason="the tpu-compile extra (libtpu) is not installed")

# config -> (4-chip topology, mesh axes whose collectives it must show)
ACCELERATOR_CONFIGS = {
    "siglip_vit_b16": ("v5e:2x2", ("fsdp",)),
    "clip_vit_l14": ("v4:2x2x1", ("fsdp", "tensor")),
    "siglip_so400m14_384": ("v5p:2x2x1", ("fsdp", "tensor")),
}


GPU_PLUGIN = os.path.join(ROOT, ".venv", "gpu-compile-plugin")  # launch/setup_venv.sh puts it there


def _compile(args, tmp_path, name="out.json", pythonpath=None):
    out = tmp_path / name
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)  # the fake CPU devices of conftest are not wanted here
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    r = subprocess.run([sys.executable, "-m", "dermjax.cli.compile", *args, "--out", str(out)], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=900)
    return r, (json.loads(out.read_text()) if out.exists() else None)


def test_every_accelerator_config_is_listed_here():
    shipped = {f[:-3] for f in os.listdir(os.path.join(ROOT, "configs"))
               if f.endswith(".py") and "cpu" not in f and f not in ("quickstart.py", "ham_text_tower.py", "__init__.py")}
    assert shipped == set(ACCELERATOR_CONFIGS)


@pytest.mark.parametrize("name", sorted(ACCELERATOR_CONFIGS))
def test_reduced_accelerator_config_compiles_for_4_chips(name, tmp_path):
    topology, axes = ACCELERATOR_CONFIGS[name]
    r, rep = _compile([f"--config=configs/{name}.py:reduced", f"--topology={topology}"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert rep["devices"] == 4 and rep["note"] == "compiled for the topology on a CPU host; not run on it"
    assert set(rep["programs"]) == {"train_step", "embed_images", "embed_texts"}
    train = rep["programs"]["train_step"]
    mem = train["memory_per_device"]
    assert 0 < mem["total"] <= 0.9 * mem["available"]
    assert mem["available"] > 10 * 2 ** 30  # read from XLA: 15.75 GiB on a v5e, 30.75 on a v4
    # XLA's FLOPs include the rematerialized forward: between 1x and 1.5x the useful work
    assert 1.0 <= train["flops_per_device"] / train["model_flops_per_device"] < 1.5
    for axis in axes:
        kinds = {k for k, v in train["collectives"].items() if any(axis in a for a in v["bytes_by_mesh_axes"])}
        assert kinds, f"no collective along {axis}"
    f = train["fsdp_collectives"]
    assert f["minimum_bytes"]["gather"] > 0 and 0.5 < f["volume_ratio"] < 3
    rf = train["roofline"]
    assert rf["step_time_lower_bound_s"] == max(rf["compute_s"], rf["hbm_s"], rf["ici_s"])
    assert 0 < rf["mfu_upper_bound"] <= 1.0
    assert "Ran out of memory" not in r.stderr and "roofline lower bound" in r.stdout


def test_a_config_that_does_not_fit_gets_one_line_and_the_fixes(tmp_path):
    r, rep = _compile(["--config=configs/siglip_vit_b16.py:reduced", "--topology=v5e:2x2", "--programs=train",
                       "--config.data.batch_size=262144", "--config.model.remat=False"], tmp_path)
    assert r.returncode == 2 and rep is None
    errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "does not fit on v5e:2x2: train_step needs" in errors[0]
    assert "GiB per device, 15.75 GiB available (short by" in errors[0]
    assert "try: --config.model.remat=True" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_topology_and_mesh_are_one_line(tmp_path):
    r, _ = _compile(["--config=configs/quickstart.py", "--topology=v9x:2x2"], tmp_path)
    assert r.returncode == 2 and "expected a TPU slice such as v5e:8x8" in r.stderr and "Traceback" not in r.stderr
    r, _ = _compile(["--config=configs/quickstart.py", "--topology=v5e:2x2", "--config.mesh.data=3"], tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "devices" in r.stderr


# --- the HLO accounting ----------------------------------------------------------------------

def test_replica_group_spellings():
    groups = hlo._replica_groups
    assert groups("replica_groups={{0,2},{1,3}}", 4) == [[0, 2], [1, 3]]
    assert groups("replica_groups=[2,2]<=[4]", 4) == [[0, 1], [2, 3]]
    assert groups("replica_groups=[2,2]<=[2,2]T(1,0)", 4) == [[0, 2], [1, 3]]
    assert groups("replica_groups=mesh['axis_0'=2,'axis_1'=2] {'axis_0'}", 4) == [[0, 2], [1, 3]]
    # devices listed in a permuted order before the mesh is formed
    assert groups("replica_groups=mesh['axis_0'=2,'axis_1'=2], device_ids=([2,2]T(1,0)) {'axis_1'}", 4) == [[0, 2], [1, 3]]
    mesh = {"data": 1, "fsdp": 2, "tensor": 2}
    assert hlo._mesh_axes([[0, 2], [1, 3]], mesh) == ("fsdp",)
    assert hlo._mesh_axes([[0, 1], [2, 3]], mesh) == ("tensor",)


def test_scanned_loops_are_counted_per_iteration():
    """The compiled step with layers under lax.scan has the FLOPs and collectives of the
    unrolled one (XLA's cost_analysis counts a loop body once); the unrolled FLOPs agree with
    XLA's count of the same program."""
    from configs.quickstart import get_config
    from dermjax.aot import chips, programs

    t = chips.target("v5e:2x2")
    out = {}
    for scan in (False, True):
        cfg = get_config()
        cfg.model.update(dict(scan=scan, dtype="bfloat16"))
        cfg.mesh = dict(data=1, fsdp=2, tensor=2)
        p = programs.train_step(cfg, t.devices, 2000)
        c = p.fn.lower(*p.args).compile()
        out[scan] = (hlo.analyze(c.as_text(), dict(p.mesh.shape)), c.cost_analysis()["flops"])
    (loop, xla_loop), (scan, xla_scan) = out[False], out[True]
    assert 0.9 < loop.flops / xla_loop <= 1.0  # XLA also counts elementwise ops; matmuls are the rest
    assert scan.flops == pytest.approx(loop.flops, rel=1e-6)
    assert xla_scan < 0.6 * scan.flops  # what the loop-blind count would have reported
    assert not scan.unknown_trip_counts
    gathered = lambda a: sum(c.bytes * c.count for c in a.collectives if c.kind == "all-gather" and "fsdp" in c.mesh_axes)
    assert gathered(scan) == pytest.approx(gathered(loop), rel=0.35)


def test_convolution_flops_count_only_real_taps():
    # A batched matmul the TPU compiler writes as a dilated convolution: [4 batch x 8] @ [8 x 16]
    attrs = ", window={size=4 stride=3 lhs_dilate=4}, dim_labels=0bf_0io->0bf"
    assert hlo._conv_flops(attrs, (4, 2, 8), (4, 8, 16), (4, 2, 16)) == 2 * 4 * 2 * 8 * 16
    assert hlo._conv_flops(", dim_labels=bf_io->bf", (32, 64), (64, 128), (32, 128)) == 2 * 32 * 64 * 128


SYNTHETIC_LOOP = """
%cond (p: (s32[], u32[], f32[4,8])) -> pred[] {
  %p = (s32[], u32[], f32[4,8]{1,0}) parameter(0)
  %c = u32[] constant(8)
  %g = u32[] get-tuple-element(%p), index=1
  ROOT %lt = pred[] compare(%g, %c), direction=LT
}

%body (p: (s32[], u32[], f32[4,8])) -> (s32[], u32[], f32[4,8]) {
  %p = (s32[], u32[], f32[4,8]{1,0}) parameter(0)
  %g1 = u32[] get-tuple-element(%p), index=1
  %two = u32[] constant(2)
  %n = u32[] add(%g1, %two)
  %g0 = s32[] get-tuple-element(%p), index=0
  %x = f32[4,8]{1,0} get-tuple-element(%p), index=2
  %w = f32[8,8]{1,0} constant({...})
  %d = f32[4,8]{1,0} dot(%x, %w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  ROOT %t = (s32[], u32[], f32[4,8]{1,0}) tuple(%g0, %n, %d)
}

ENTRY %main (a: f32[4,8]) -> f32[4,8] {
  %a = f32[4,8]{1,0} parameter(0)
  %z = s32[] constant(5)
  %zero = u32[] constant(0)
  %init = (s32[], u32[], f32[4,8]{1,0}) tuple(%z, %zero, %a)
  %loop = (s32[], u32[], f32[4,8]{1,0}) while(%init), condition=%cond, body=%body
  ROOT %r = f32[4,8]{1,0} get-tuple-element(%loop), index=2
}
"""


def test_loop_trip_count_follows_the_counter_wherever_it_sits():
    """A windowed-einsum-like loop: the counter is tuple element 1 and steps by 2 up to 8 (4 trips)."""
    a = hlo.analyze(SYNTHETIC_LOOP, {"data": 1, "fsdp": 1, "tensor": 1})
    assert not a.unknown_trip_counts
    assert a.flops == 4 * 2 * 4 * 8 * 8


def test_gpu_target_compiles_without_a_gpu(tmp_path):
    """The CUDA plugin (the gpu-compile extra, no CUDA libraries) compiles for an H100 target
    described by a target config; XLA's cost analysis is unavailable there, dermjax's HLO
    accounting is not, and a program larger than the GPU's memory is refused here."""
    if not os.path.isdir(os.path.join(GPU_PLUGIN, "jax_plugins")):
        pytest.skip(f"the CUDA plugin is not in {GPU_PLUGIN} (launch/setup_venv.sh installs it)")
    r, rep = _compile(["--config=configs/siglip_vit_b16.py:reduced", "--topology=h100:1x1x4", "--programs=train"],
                      tmp_path, pythonpath=GPU_PLUGIN)
    assert r.returncode == 0, r.stderr[-2000:]
    train = rep["programs"]["train_step"]
    assert rep["chip"]["name"].startswith("NVIDIA H100") and train["xla_cost_analysis"] == {}
    assert 1.0 <= train["flops_per_device"] / train["model_flops_per_device"] < 1.5
    f = train["fsdp_collectives"]
    assert 0.5 < f["volume_ratio"] < 3, f
    r, _ = _compile(["--config=configs/siglip_vit_b16.py:reduced", "--topology=h100:1x1x4", "--programs=train",
                     "--config.data.batch_size=1048576", "--config.model.remat=False"], tmp_path, "big.json",
                    pythonpath=GPU_PLUGIN)
    assert r.returncode == 2 and "does not fit on h100:1x1x4" in r.stderr and "Traceback" not in r.stderr
