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
            sys.exit(2)
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            sys.exit(130)
    return wrapped
