"""The bad-input and fault corpus (tests/corpus/make_corpus.py), run as a user runs the commands.

Every case must end the way the README promises: the expected exit status (1 when the
work failed, 2 only for bad usage), exactly one ``prog: error: ...`` line on stderr
naming what it is about, no traceback, no output or temporary file left behind, and an
earlier file at the output path untouched.

Set VTCAV_CORPUS_DIR to reuse a corpus folder between runs (it is built there once), and
VTCAV_CORPUS_CODE to run the corpus against another checkout of the code.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SESSION, ctrl_c_reaches_the_child

sys.path.insert(0, str(Path(__file__).resolve().parent / "corpus"))
import make_corpus  # noqa: E402

EARLIER = b"an earlier output that must survive\n"
CASES = make_corpus.cases()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    reuse = os.environ.get("VTCAV_CORPUS_DIR")
    if reuse:
        folder = Path(reuse)
        if not (folder / "ckpt").exists():
            make_corpus.build(folder)
        return folder
    return make_corpus.build(tmp_path_factory.mktemp(f"{SESSION}corpus"))


def _fill(text: str, c: Path, t: Path) -> str:
    return text.replace("{c}", str(c)).replace("{t}", str(t))


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir()}


def _readonly(folder: Path) -> None:
    """A folder nobody may write into, root included (chattr +i), or skip."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a folder read-only for root here (chattr +i refused)")


def _writable(folder: Path) -> None:
    if folder.exists():
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        folder.chmod(0o755)


def prepare(case: make_corpus.Case, c: Path, t: Path) -> dict[Path, bytes]:
    """Build the case's scratch folder; return the files that must stay byte for byte."""
    for name in case.copies:
        shutil.copy(c / name, t / name)
    if case.setup == "under_file":
        (t / "file.txt").write_text("a regular file, not a folder\n")
    if case.setup == "full":
        try:
            os.mknod(t / "full", 0o666 | stat.S_IFCHR, os.makedev(1, 7))
        except PermissionError:
            pytest.skip("mknod not permitted here")
    kept = {}
    if case.output:
        out = Path(_fill(case.output, c, t))
        out.parent.mkdir(parents=True, exist_ok=True)
        if not out.exists():
            out.write_bytes(EARLIER)
        kept[out] = out.read_bytes()
    for name in case.copies:
        kept[t / name] = (t / name).read_bytes()
    if case.setup == "readonly":
        _readonly(t / "ro")
    return kept


def run_signalled(case: make_corpus.Case, argv: list[str], c: Path, t: Path) -> subprocess.CompletedProcess:
    """Send the case's signal once the output's temporary file exists (mid-write), or close
    standard output at once (a reader that went away: SIGPIPE)."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=t,
                               env=make_corpus.environment(), preexec_fn=ctrl_c_reaches_the_child)
    if case.signal == "SIGPIPE":
        process.stdout.close()
        stderr = process.stderr.read()
        process.wait(timeout=300)
        return subprocess.CompletedProcess(argv, process.returncode, "", stderr.decode())
    out = Path(_fill(case.output, c, t))
    deadline = time.monotonic() + 300
    while not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.vtcav-")]:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, stderr = process.communicate()
            pytest.fail(f"no temporary output appeared before the command ended:\n{stderr.decode()}")
        time.sleep(0.02)
    process.send_signal(getattr(signal, case.signal))
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(argv, process.returncode, stdout.decode(), stderr.decode())


def run_case(case: make_corpus.Case, c: Path, t: Path) -> subprocess.CompletedProcess:
    argv = make_corpus.command(case.tool) + [_fill(a, c, t) for a in case.args]
    if case.signal:
        return run_signalled(case, argv, c, t)
    wrap = []
    if case.ulimit_f:
        wrap.append(f"ulimit -f {case.ulimit_f}")
    if case.stdin is None:
        wrap.append('exec "$@" <&-')
    elif wrap:
        wrap.append('exec "$@"')
    if wrap:
        argv = ["bash", "-c", "; ".join(wrap), "bash", *argv]
    return subprocess.run(argv, input=case.stdin, capture_output=True, text=True, cwd=t,
                          env=make_corpus.environment(), timeout=300)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_corpus_case(case, corpus, tmp_path):
    t = tmp_path / "case"
    t.mkdir()
    kept = prepare(case, corpus, t)
    before = _files(t)
    try:
        result = run_case(case, corpus, t)
    finally:
        _writable(t / "ro")
    stderr = result.stderr
    assert "Traceback" not in stderr, stderr
    assert result.returncode == case.code, f"exit {result.returncode}, expected {case.code}:\n{stderr}"
    prog = f"{case.tool} import" if case.tool == "vt-detect" and case.args[:1] == ("import",) else case.tool
    errors = [line for line in stderr.splitlines() if line.startswith(f"{prog}: error: ")]
    if case.code == 0:   # odd but valid input: it works, and says nothing is wrong
        _check_success(case, corpus, t, before, errors)
        return
    if case.signal:
        assert not errors, errors
        if case.signal != "SIGPIPE":   # (a reader that went away ends the command silently)
            word = "terminated" if case.signal == "SIGTERM" else "interrupted"
            assert stderr.strip().splitlines()[-1] == f"{case.tool}: {word}", stderr
    else:   # usage errors too (a missing argument, an unknown option): one line, like every error
        assert len(errors) == 1, f"expected one '{case.tool}: error:' line:\n{stderr}"
        assert case.says.lower() in errors[0].lower(), f"the error line should name {case.says!r}:\n{errors[0]}"
    assert len(errors[0] if errors else "") < 2000, "the error line echoes the input"
    for path, data in kept.items():
        assert path.read_bytes() == data, f"{path.name} was changed by a failed run"
    left = _files(t) - before
    assert not left, f"the failed run left {sorted(left)}"
    if case.setup == "full":
        assert stat.S_ISCHR((t / "full").stat().st_mode), "the device was replaced by a file"
    assert not (corpus / "PWNED").exists(), "a checkpoint's pickled code ran"


def _check_success(case, corpus: Path, t: Path, before: set[str], errors: list[str]) -> None:
    assert not errors, errors
    out = Path(_fill(case.output, corpus, t))
    assert out.read_bytes() != EARLIER, "the output was not written"
    left = {name for name in _files(t) - before if ".vtcav-" in name or ".tmp" in name}
    assert not left, f"temporary files left: {sorted(left)}"


def test_corpus_is_large_and_covers_every_command():
    assert len(CASES) >= 60
    assert {case.tool for case in CASES} == set(make_corpus.MODULES)
    assert len({case.id for case in CASES}) == len(CASES)
