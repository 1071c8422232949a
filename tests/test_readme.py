"""Every command the README shows exists: each dermjax command (and prep subcommand) answers
--help and lists every flag the README gives it; each script it runs is in the tree and
executable."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = {"dermjax-prep": "dermjax.cli.prep", "dermjax-train": "dermjax.cli.train",
           "dermjax-eval": "dermjax.cli.evaluate", "dermjax-export": "dermjax.cli.export",
           "dermjax-compile": "dermjax.cli.compile"}


def readme_commands() -> list[list[str]]:
    """The command lines of the README's code blocks, continuation lines joined, comments cut."""
    text = open(os.path.join(ROOT, "README.md")).read()
    out = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                out.append(shlex.split(line.replace("$(", "").replace(")", ""), comments=True))
    return out


def _dermjax(words: list[str]) -> list[tuple[str, list[str]]]:
    """(command, its words) for each dermjax command in a line (pipes and && split it)."""
    found, current = [], None
    for w in words:
        if w in ("|", "&&", ";"):
            current = None
        elif os.path.basename(w) in MODULES:
            current = (os.path.basename(w), [])
            found.append(current)
        elif current is not None:
            current[1].append(w)
    return found


CALLS = [c for line in readme_commands() for c in _dermjax(line)]
SCRIPTS = sorted({w.split(">")[0] for line in readme_commands() for w in line
                  if re.match(r"^(\./)?(launch|data_prep)/[\w.]+\.sh$", w.split(">")[0])})


def test_the_readme_shows_each_command():
    assert {c for c, _ in CALLS} == set(MODULES)
    assert "launch/quickstart.sh" in {s.removeprefix("./") for s in SCRIPTS}


@pytest.mark.parametrize("command, words", CALLS, ids=[f"{c} {' '.join(w[:1])}" for c, w in CALLS])
def test_readme_command_answers_help_with_its_flags(command, words):
    sub = [words[0]] if command == "dermjax-prep" and words and not words[0].startswith("-") else []
    p = subprocess.run([sys.executable, "-m", MODULES[command], *sub, "--help"], capture_output=True,
                       text=True, cwd=ROOT, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert p.returncode == 0, p.stderr[-2000:]
    flags = {w.split("=")[0] for w in words if w.startswith("--") and not w.startswith("--config.")}
    missing = sorted(f for f in flags if f not in p.stdout)
    assert not missing, f"{command} {' '.join(sub)}: README flags not in --help: {missing}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_readme_script_exists_and_is_executable(script):
    path = os.path.join(ROOT, script)
    assert os.path.isfile(path) and os.access(path, os.X_OK), script
