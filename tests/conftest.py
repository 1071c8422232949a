"""Test setup: 8 fake CPU devices (must happen before JAX is imported) and parsed absl flags."""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import flags  # noqa: E402

# grain worker processes read absl flags; unparsed flags raise UnparsedFlagAccessError there.
flags.FLAGS.mark_as_parsed()
