"""The CPU launch environment: device count replaced, the user's other XLA flags kept."""
import subprocess
import sys

from dermjax import cpu_env


def test_environment_replaces_the_device_count_and_keeps_other_flags():
    env = cpu_env.environment(2, base={"XLA_FLAGS": "--xla_dump_to=/tmp/d --xla_force_host_platform_device_count=8",
                                       "HOME": "/h"})
    assert env["XLA_FLAGS"].split() == ["--xla_dump_to=/tmp/d", "--xla_force_host_platform_device_count=2"]
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1" and env["HOME"] == "/h"
    assert "XLA_FLAGS" not in cpu_env.environment(1, base={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})


def test_shell_exports():
    out = subprocess.run([sys.executable, "-m", "dermjax.cpu_env", "--devices", "1"], capture_output=True,
                         text=True, check=True, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}).stdout
    assert out.splitlines() == ["export GLIBC_TUNABLES=glibc.malloc.hugetlb=1", "unset XLA_FLAGS",
                                "export JAX_PLATFORMS=cpu"]  # this host has no accelerator


def test_cpu_only_hosts_pin_jax_to_the_cpu_unless_told_otherwise(monkeypatch):
    monkeypatch.setattr(cpu_env, "accelerator_present", lambda: False)
    assert cpu_env.environment(1, base={})["JAX_PLATFORMS"] == "cpu"
    assert cpu_env.environment(1, base={"JAX_PLATFORMS": "tpu"})["JAX_PLATFORMS"] == "tpu"
    monkeypatch.setattr(cpu_env, "accelerator_present", lambda: True)
    assert "JAX_PLATFORMS" not in cpu_env.environment(1, base={})


def test_machine_names_the_cpu_and_its_vector_isa():
    m = cpu_env.machine()
    assert m["cpu"] != "unknown" and m["cores"] >= 1
    assert set(m["isa"]) <= {name for _, name in cpu_env.ISA_FLAGS}
