"""What every command line shares: bad input ends in one line on stderr and a non-zero exit."""
from __future__ import annotations

import functools
import sys

from dermjax.errors import DermjaxError


def quiet_libraries() -> None:
    """Orbax and grain log every file they touch at INFO; progress bars say what matters.
    A failed orbax read also leaves asyncio tasks whose errors asyncio logs when they are
    collected, after the one line that reported the failure: those are not shown."""
    import logging as std_logging

    from absl import logging

    logging.set_verbosity(logging.WARNING)
    std_logging.getLogger("asyncio").setLevel(std_logging.CRITICAL)


def one_line_errors(main):
    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        quiet_libraries()
        try:
            return main(*args, **kwargs)
        except DermjaxError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(e.exit_status)
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            sys.exit(130)
    return wrapped


def parse_flags_or_exit(argv: list[str]) -> list[str]:
    """absl's flag parsing for app.run(flags_parser=...), with a bad flag or a bad
    `--config.KEY=VALUE` (unknown key, wrong type) as one line and exit status 2; absl would
    print a traceback or exit 1, and a scheduler would requeue the job."""
    import re

    from absl import flags

    try:
        return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
        text = str(e).replace("\\n", "\n").strip().strip("\"'")
        keys = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")]
        if isinstance(e, (AttributeError, KeyError)):
            name = text.splitlines()[0].strip("\"'\\")
            key = next((k for k in keys if k.rsplit(".", 1)[-1] == name), f"--config...{name}")
            guess = re.search(r'Did you mean "([^"]+)"', text)
            print(f"error: {key}: not a config key" + (f" (did you mean {guess.group(1)}?)" if guess else "")
                  + "; every key and its default is in dermjax/train/defaults.py", file=sys.stderr)
        else:
            print(f"error: {text.splitlines()[0]}", file=sys.stderr)
        sys.exit(2)
