"""Test setup: 8 fake CPU devices (must happen before JAX is imported) and parsed absl flags."""
import os

# The collective timeouts: 8 device threads share 2 cores here, and a CI run once aborted
# (SIGABRT, message swallowed by pytest's capture) inside a cross-device step under load.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
                           " --xla_cpu_collective_call_terminate_timeout_seconds=1800"
                           " --xla_cpu_collective_timeout_seconds=1800").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The compile tests use libtpu's compile-only devices; another process's lock (e.g. a CPU training
# run elsewhere on the host) must not fail them.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

from absl import flags  # noqa: E402

# grain worker processes read absl flags; unparsed flags raise UnparsedFlagAccessError there.
flags.FLAGS.mark_as_parsed()
