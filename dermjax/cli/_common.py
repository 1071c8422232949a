"""What every command line shares: bad input ends in one line on stderr and a non-zero exit."""
from __future__ import annotations

import argparse
import functools
import logging as std_logging
import os
import re
import sys

from absl import flags, logging

from dermjax.core.errors import DermjaxError


def quiet_libraries() -> None:
    """Orbax and grain log every file they touch at INFO; progress bars say what matters, so
    absl logging starts at WARNING unless the command line set --verbosity (or -v).
    A failed orbax read also leaves asyncio tasks whose errors asyncio logs when they are
    collected, after the one line that reported the failure: those are not shown."""
    if not (flags.FLAGS.is_parsed() and flags.FLAGS["verbosity"].present):
        logging.set_verbosity(logging.WARNING)
    std_logging.getLogger("asyncio").setLevel(std_logging.CRITICAL)


def add_verbosity(parser, *subparsers) -> None:
    """`-v/--verbosity N` on an argparse command, as absl counts it (the same flag as
    dermjax-train's): -1 warnings (the default), 0 info, 1 debug. On a subcommand too, so it may
    come before or after the subcommand's name."""
    parser.add_argument("-v", "--verbosity", type=int, default=None,
                        help="logging level: -1 warnings (default), 0 info, 1 debug")
    for sub in subparsers:
        sub.add_argument("-v", "--verbosity", type=int, default=argparse.SUPPRESS,
                         help="logging level: -1 warnings (default), 0 info, 1 debug")


def set_verbosity(level: int | None) -> None:
    """Applies an argparse command's --verbosity to absl and the standard logging module."""
    if level is None:
        return
    logging.set_verbosity(level)
    std_logging.getLogger().setLevel(logging.converter.absl_to_standard(level))


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


def package_config_dirs() -> list[str]:
    """Where the shipped configs are: dermjax/configs in an installed wheel (setup.py maps the
    source tree's configs/ there), configs/ beside the package in a source checkout."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [d for d in (os.path.join(here, "configs"), os.path.join(os.path.dirname(here), "configs"))
            if os.path.isfile(os.path.join(d, "quickstart.py"))]


def resolve_config(spec: str) -> str:
    """`--config` as a path that exists, or a shipped config by name: `quickstart`,
    `quickstart.py`, `configs/quickstart.py` or `dermjax/configs/quickstart.py`, each optionally
    with `:ARG` (the argument get_config receives). A path that exists always wins."""
    path, sep, arg = spec.partition(":")
    if os.path.exists(path) or not path:
        return spec
    name = os.path.basename(path)
    name = name if name.endswith(".py") else name + ".py"
    if os.path.dirname(path) in ("", "configs", os.path.join("dermjax", "configs")):
        for d in package_config_dirs():
            if os.path.isfile(os.path.join(d, name)):
                return os.path.join(d, name) + sep + arg
    return spec


def shipped_configs() -> list[str]:
    dirs = package_config_dirs()
    return sorted(f[:-3] for f in os.listdir(dirs[0]) if f.endswith(".py") and not f.startswith("_")) if dirs else []


def _with_resolved_config(argv: list[str]) -> list[str]:
    """argv with --config resolved (resolve_config); a config that is neither a file nor a shipped
    name is one line and exit status 2 here, where config_flags would raise a traceback."""
    out, i = list(argv), 1
    while i < len(out):
        a = out[i]
        at = i + 1 if a == "--config" and i + 1 < len(out) else i if a.startswith("--config=") else None
        if at is not None:
            given = out[at] if at != i else a[len("--config="):]
            spec = resolve_config(given)
            if not os.path.isfile(spec.partition(":")[0]):
                print(f"error: --config {given}: no such file, and not a shipped config "
                      f"(shipped: {', '.join(shipped_configs()) or 'none found'})", file=sys.stderr)
                sys.exit(2)
            out[at] = spec if at != i else "--config=" + spec
            i = at
        i += 1
    return out


def print_absl_help() -> None:
    """The command's docstring and its own flags. absl's --help finds neither when the command
    is a console script (it looks them up under sys.argv[0], the script stub), so the command
    module is found here by the flags it defines."""
    by_module = flags.FLAGS.flags_by_module_dict()
    here = os.path.dirname(os.path.abspath(__file__))
    ours = [m for m in by_module if m.startswith("dermjax.cli.") or os.path.dirname(os.path.abspath(m)) == here]
    mod = sys.modules.get(ours[0]) if ours else None
    doc = (mod.__doc__ if mod is not None else None) or sys.modules["__main__"].__doc__ or ""
    print(doc.strip() + "\n")
    print("flags:")
    for m in ours:
        for f in sorted(by_module[m], key=lambda f: f.name):
            print(f"  --{f.name}: {f.help}" + (f" (default: {f.default_as_str})" if f.default is not None else ""))
    print("  --verbosity, -v: absl logging level (default: warnings only; 0 = info, 1 = debug)")
    names = shipped_configs()
    if names:
        print(f"\nshipped configs (--config NAME[:ARG]): {', '.join(names)}")
    print("Try --helpfull to get a list of all flags.")


def parse_flags_or_exit(argv: list[str]) -> list[str]:
    """absl's flag parsing for app.run(flags_parser=...), with a bad flag or a bad
    `--config.KEY=VALUE` (unknown key, wrong type) as one line and exit status 2; absl would
    print a traceback or exit 1, and a scheduler would requeue the job."""
    if any(a in ("-h", "--help", "--helpshort", "-?") for a in argv[1:]):
        print_absl_help()
        sys.exit(0)
    argv = _with_resolved_config(argv)
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
