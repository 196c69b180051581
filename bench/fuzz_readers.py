"""A longer fuzzing run of every reader (tests/test_fuzz.py with many more examples).

    .venv/bin/python bench/fuzz_readers.py [--examples 300] [--corpus /tmp/corpus]

CI runs each property with VTCAV_FUZZ_EXAMPLES=12 and hypothesis derandomised (the same
examples every time); this runs them with fresh random examples and prints the examples per
property, the time, and any failure hypothesis found (shrunk to a minimal example). Reuse a
built corpus folder with --corpus (make_corpus.py builds one when it is missing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300, help="examples per property")
    parser.add_argument("--corpus", default="", help="a corpus folder to reuse (built if missing)")
    parser.add_argument("-k", default="", help="only properties matching this pytest -k expression")
    args = parser.parse_args()
    env = {**os.environ, "VTCAV_FUZZ_EXAMPLES": str(args.examples), "VTCAV_FUZZ_RANDOM": "1",
           "PYTHONPATH": str(REPO), "YOLO_OFFLINE": "1", "MPLBACKEND": "Agg"}
    if args.corpus:
        env["VTCAV_CORPUS_DIR"] = args.corpus
    command = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "tests/test_fuzz.py"]
    if args.k:
        command += ["-k", args.k]
    start = time.monotonic()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    counts = re.search(r"fuzz examples: (\{.*\})", result.stdout)
    print(f"examples per property: {counts.group(1) if counts else '?'}")
    total = sum(json.loads(counts.group(1)).values()) if counts else "?"
    print(f"{total} examples in {seconds:.0f} s; pytest exit {result.returncode}")
    if result.returncode:
        print(result.stdout[-6000:])
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
