"""The command frame every vt-* tool shares: one vocabulary of options, hidden old spellings,
progress in logs, warnings summarised, and a library that does not import typer."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import textwrap

import pytest
import typer.main
from typer.testing import CliRunner

from conftest import REPO, run_cmd
from vtcav_common.cli import frame, options
from vtcav_common.cli.bundles import BUNDLE, ModelOptions, bundled

TOOLS = ("vt_synth", "vt_detect", "vt_concepts", "vt_embed", "vt_cav", "vt_score", "vt_stats", "vt_explain",
         "vt_ace", "vt_report", "vt_merge")
# Library modules that may import typer: the frame itself and the option declarations.
FRAME_MODULES = {"vtcav_common.cli.frame", "vtcav_common.cli.options", "vtcav_common.cli.bundles", "vtcav_common.cli"}


def _commands():
    """(command path, click command) for every command and subcommand of every tool."""
    found = []
    for tool in TOOLS:
        module = importlib.import_module(f"tools.{tool}")
        command = typer.main.get_command(module.app)
        subcommands = getattr(command, "commands", None)
        if isinstance(command, frame.MainWithSubcommands):   # vt-detect itself, and vt-detect import
            found.append((tool, command.main_command))
        if subcommands:
            found += [(f"{tool} {name}", sub) for name, sub in subcommands.items()]
        else:
            found.append((tool, command))
    return found


def _options(command):
    return [p for p in command.params if getattr(p, "opts", None) and p.opts[0].startswith("-")]


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **env})


# --------------------------------------------------------------------------- one vocabulary
def test_every_command_speaks_one_vocabulary():
    """The same option name means the same thing, with the same type, in every command."""
    problems = []
    for where, command in _commands():
        for option in _options(command):
            names = set(option.opts) | set(getattr(option, "hidden_aliases", ()))
            if "-o" in names and "--output" not in option.opts:
                problems.append(f"{where}: -o is {option.opts}, not --output")
            if "--output" in option.opts and "--out" not in names:
                problems.append(f"{where}: --output without the old --out alias")
            if "--device" in option.opts and option.default != "auto":
                problems.append(f"{where}: --device defaults to {option.default!r}, not auto")
            if "--batch" in option.opts:
                problems.append(f"{where}: --batch shown; the option is --batch-size")
            if "--size" in option.opts and option.bare_type() != "str":
                problems.append(f"{where}: --size is {option.bare_type()}, not H|HxW text")
            if "--frames" in option.opts and option.bare_type() != "int":
                problems.append(f"{where}: --frames is {option.bare_type()}, not a clip length")
            if "--model" in option.opts and "vt_detect" in where:
                problems.append(f"{where}: --model shown for the detector; it is --detector")
            if {"--label", "--concept"} & set(option.opts) and not option.multiple:
                problems.append(f"{where}: {option.opts[0]} does not repeat")
    assert not problems, "\n".join(problems)


def test_old_spellings_are_hidden_from_help_but_accepted():
    hidden = {"--out", "--batch", "--stride"}
    for where, command in _commands():
        for option in _options(command):
            assert not hidden & set(option.opts), f"{where}: {option.opts} shows an old spelling"
    detect = dict(_commands())["vt_detect"]
    aliases = {a for option in _options(detect) for a in getattr(option, "hidden_aliases", ())}
    assert {"--model", "-m", "--batch", "--stride", "--out"} <= aliases
    faithfulness = dict(_commands())["vt_ace faithfulness"]   # the class is --target, as everywhere
    assert any("--target" in o.opts and "--label" in o.hidden_aliases for o in _options(faithfulness)
               if hasattr(o, "hidden_aliases"))


def test_hidden_alias_gives_the_same_output(tiny_world, tmp_path):
    args = ["random", "--videos", tiny_world / "labels.jsonl", "--sets", "2", "--clips-per-set", "2", "-q"]
    run_cmd("vt-concepts", *args, "--out", tmp_path / "old.h5", "--stride", "1", check=True)
    run_cmd("vt-concepts", *args, "--output", tmp_path / "new.h5", check=True)
    assert (tmp_path / "old.h5").read_bytes() == (tmp_path / "new.h5").read_bytes()
    shown = run_cmd("vt-concepts", "random", "--help", check=True).stdout
    assert "--output" in shown and not re.search(r"--out\b(?!put)", shown)


def test_bad_option_value_is_one_usage_line():
    result = run_cmd("vt-synth", "/nonexistent/w", "--size", "40x48")
    assert result.returncode == 2
    assert result.stderr.strip() == "vt-synth: error: --size 40x48: this frame is square; give one number"


# --------------------------------------------------------------------------- option bundles
def test_a_bundle_is_its_options_on_the_command_line_and_one_object_in_the_command():
    """vt-ace's model commands take --model/--weights where the bundle stands and --device,
    --class-names, --trust-checkpoint with the closing options, as their help has always shown."""
    app, seen = frame.make_app("vt-x", help="A test tool.", single=False), []

    @app.command()
    @bundled
    def run(path: str = typer.Argument(...), model: ModelOptions = BUNDLE, seed: int = options.seed(),
            batch_size: int = options.batch_size(4), quiet: bool = options.quiet()) -> None:
        seen.append((path, model, seed, batch_size))

    command = typer.main.get_command(app).commands["run"]
    assert [p.name for p in command.params] == ["path", "model", "weights", "seed", "batch_size", "device",
                                                "class_names", "trust_checkpoint", "quiet"]
    result = CliRunner().invoke(app, ["run", "p", "--weights", "w.pt", "--device", "cpu", "--batch", "2"])
    assert result.exit_code == 0, result.output
    assert seen == [("p", ModelOptions(None, "w.pt", "cpu", None, False), 0, 2)]   # old --batch still accepted
    masks = dict(_commands())["vt_ace masks"]
    assert [p.name for p in masks.params][-6:] == ["device", "class_names", "trust_checkpoint", "shard", "quiet",
                                                   "version"]


# --------------------------------------------------------------------------- typer stays in the frame
def test_library_does_not_import_typer():
    import vtcav_common

    library = [m for m in _walk(vtcav_common) if m not in FRAME_MODULES]
    result = _python(f"""
        import importlib, sys
        for name in {library!r}:
            importlib.import_module(name)
            if "typer" in sys.modules:
                print(name)
                break
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"{result.stdout.strip()} imports typer"


def _walk(package):
    import pkgutil

    return sorted(m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + "."))


# --------------------------------------------------------------------------- progress
PROGRESS_SCRIPT = """
    import sys, time
    from vtcav_common.core import messages
    messages.set_prog("vt-test")
    messages.set_quiet({quiet})
    for _ in messages.progress(range(6), total=6, description="clips"):
        time.sleep(0.1)
"""


def test_progress_lines_at_a_steady_interval_when_stderr_is_not_a_terminal():
    result = _python(PROGRESS_SCRIPT.format(quiet=False), VTCAV_PROGRESS_INTERVAL="0.15")
    lines = result.stderr.splitlines()
    pattern = re.compile(r"vt-test: clips (\d)/6 \(\d+%\), [\d.]+/s(, ETA \d+s)?$")
    assert len(lines) >= 3, result.stderr
    assert all(pattern.match(line) for line in lines), result.stderr
    assert lines[-1].startswith("vt-test: clips 6/6 (100%)")
    counts = [int(pattern.match(line).group(1)) for line in lines]
    assert counts == sorted(counts)


def test_progress_counts_clips_not_batches():
    """vt-embed's batches count their clips: the line reads in the unit a user thinks in."""
    script = """
    import time
    from vtcav_common.core import messages
    messages.set_prog("vt-test")
    for _ in messages.progress([[0] * 8, [0] * 8, [0] * 4], total=20, description="ball clips", size=len):
        time.sleep(0.1)
"""
    result = _python(script, VTCAV_PROGRESS_INTERVAL="0.05")
    lines = result.stderr.splitlines()
    assert lines and lines[-1].startswith("vt-test: ball clips 20/20 (100%)"), result.stderr
    assert {int(re.match(r"vt-test: ball clips (\d+)/20", line).group(1)) for line in lines} <= {0, 8, 16, 20}


def test_quiet_silences_progress():
    result = _python(PROGRESS_SCRIPT.format(quiet=True), VTCAV_PROGRESS_INTERVAL="0.05")
    assert result.returncode == 0 and result.stderr == ""


def test_short_steps_print_no_progress():
    """Below the interval nothing is printed: a quick command's stderr stays clean."""
    result = _python(PROGRESS_SCRIPT.format(quiet=False), VTCAV_PROGRESS_INTERVAL="60")
    assert result.returncode == 0 and result.stderr == ""


# --------------------------------------------------------------------------- warnings
WARNING_SCRIPT = """
    import sys, warnings
    import typer
    from sklearn.exceptions import ConvergenceWarning
    from vtcav_common.cli import frame
    from vtcav_common.core.errors import VtcavError

    app = frame.make_app("vt-test", help="test")

    @app.command()
    def main(fail: bool = typer.Option(False, "--fail")):
        for _ in range(31):
            warnings.warn("Maximum number of iteration reached before convergence.", ConvergenceWarning)
        warnings.warn("something once")
        warnings.warn("old API", DeprecationWarning)
        if fail:
            raise VtcavError("data.h5: broken")
        print("records")

    sys.argv = ["vt-test", *sys.argv[1:]]
    frame.run(app, "vt-test")
"""


def test_warnings_are_summarised_once_each_with_a_count():
    result = _python(WARNING_SCRIPT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "records\n"
    assert result.stderr.splitlines() == [
        "warning: ConvergenceWarning x 31: Maximum number of iteration reached before convergence.",
        "warning: UserWarning: something once"]


def test_warnings_summary_comes_before_the_error_line():
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(WARNING_SCRIPT), "--fail"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[-1] == "vt-test: error: data.h5: broken"
    assert lines[0].startswith("warning: ConvergenceWarning x 31")
    assert sum("error" in line for line in lines) == 1


@pytest.mark.parametrize("tool", [t.replace("_", "-") for t in TOOLS])
def test_every_command_has_version_and_help(tool):
    assert run_cmd(tool, "--version", check=True).stdout.startswith("vtcav ")
    assert "Examples" in run_cmd(tool, "--help", check=True).stdout


def test_subcommands_are_registered_one_way(tmp_path):
    """Through the frame: ``register(app)`` or ``@app.command``; no front end dispatches on sys.argv.
    On a one-command tool a registered subcommand runs as a program of its own (vt-detect import:
    its usage, its help, its errors' name), and a first word naming none is the tool's input."""
    for path in sorted((REPO / "tools").glob("vt_*.py")):
        assert "sys.argv" not in path.read_text(), f"{path.name} reads sys.argv"
    detect = typer.main.get_command(importlib.import_module("tools.vt_detect").app)
    assert isinstance(detect, frame.MainWithSubcommands) and list(detect.commands) == ["import"]
    shown = run_cmd("vt-detect", "import", "-h", check=True).stdout
    assert "Usage: vt-detect import [OPTIONS]" in shown and "vt-detect import mot MOT17-02" in shown
    assert "Usage: vt-detect [OPTIONS]" in run_cmd("vt-detect", "--help", check=True).stdout
    assert run_cmd("vt-detect", "import", "--version", check=True).stdout.startswith("vtcav ")
    result = run_cmd("vt-detect", "import", "--nope")
    assert result.returncode == 2
    assert result.stderr == "vt-detect import: error: No such option: --nope (see vt-detect import --help)\n"
    result = run_cmd("vt-detect", "import", "mot", tmp_path / "gt.txt")
    assert (result.returncode, result.stderr) == (1, f"vt-detect import: error: {tmp_path / 'gt.txt'}: no such file\n")
    result = run_cmd("vt-detect", "detect", "--detector", tmp_path / "none.pt")   # "detect": an input's name
    assert result.returncode == 1
    assert result.stderr == f"vt-detect: error: {tmp_path / 'none.pt'}: no such weights file\n"


def test_no_progress_line_after_the_error_line():
    script = """
        import sys, time
        from vtcav_common.cli import frame
        from vtcav_common.core import messages
        from vtcav_common.core.errors import VtcavError

        app = frame.make_app("vt-test", help="test")

        @app.command()
        def main():
            for i in messages.progress(range(100), total=100, description="clips"):
                time.sleep(0.05)
                if i == 5:
                    raise VtcavError("data.h5: broken at clip 5")

        sys.argv = ["vt-test"]
        frame.run(app, "vt-test")
    """
    result = _python(script, VTCAV_PROGRESS_INTERVAL="0.02")
    lines = result.stderr.splitlines()
    assert result.returncode == 1
    assert lines[-1] == "vt-test: error: data.h5: broken at clip 5"
    assert any(line.startswith("vt-test: clips ") for line in lines[:-1]), result.stderr
