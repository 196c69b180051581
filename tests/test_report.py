"""vt-report: one self-contained HTML page (and Markdown) with the settings, the significance table,
the figures and links to review sheets; checked in a real headless browser when one is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from conftest import run_cmd

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)


def stats_record(layer: str, concept: str, mean: float, p: float, significant: bool, direction: str = "+",
                 cav_ok: bool = True) -> dict:
    """A record as vt-stats writes it (the fields the report shows)."""
    return {"target": "right", "layer": layer, "concept": concept, "against": "random", "kind": "concept",
            "test": "ttest", "R": 10, "n": 10, "mean": mean, "std": 0.05, "null_mean": 0.5, "null_std": 0.2,
            "p": p, "p_corrected": min(1.0, p * 6), "effect_size": 2.5, "cav_accuracy": 0.9 if cav_ok else 0.5,
            "cav_ok": cav_ok, "significant": significant, "direction": direction, "correction": "bonferroni",
            "family": "target", "m": 6, "alpha": 0.05}


@pytest.fixture
def run_dir(tmp_path):
    records = [stats_record("block1", "ball_right", 0.99, 1e-5, True),
               stats_record("block1", "ball_left", 0.41, 0.3, False),
               stats_record("block2", "ball_right", 1.0, 1e-6, True),
               stats_record("block2", "ball_left", 0.01, 1e-4, True, "-"),
               stats_record("block3", "ball_static", 0.5, 0.9, False, cav_ok=False),
               stats_record("block3", "a|b", 0.7, 0.2, False)]
    (tmp_path / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    figure = np.full((60, 120, 3), 255, np.uint8)
    figure[20:40, 10:110] = (200, 80, 30)
    cv2.imwrite(str(tmp_path / "tcav.png"), figure)
    (tmp_path / "review").mkdir()
    (tmp_path / "review" / "ball_right.html").write_text("<html><body>sheet</body></html>")
    return tmp_path


def make_report(run_dir, *extra):
    return run_cmd("vt-report", run_dir / "stats.jsonl", "--figure", run_dir / "tcav.png",
                   "--review", run_dir / "review", "-o", run_dir / "out" / "report.html", *extra)


def test_report_html_and_markdown(run_dir):
    result = make_report(run_dir)
    assert result.returncode == 0, result.stderr
    page = (run_dir / "out" / "report.html").read_text()
    # self-contained: the figure inline, no script, nothing fetched from elsewhere
    assert "data:image/png;base64," in page and "<script" not in page and 'src="http' not in page
    assert page.count("<tr class=sig-pos>") == 2 and page.count("<tr class=sig-neg>") == 1
    assert "chance CAV" in page and "yes, lower" in page and "a|b" in page
    assert 'href="../review/ball_right.html"' in page        # links relative to the report
    assert "bonferroni" in page and "target" in page            # the settings
    md = (run_dir / "out" / "report.md").read_text()
    assert "| block2 | ball_left | random | 10 | 0.01 ± 0.05 |" in md and "a\\|b" in md
    assert "![tcav.png](../tcav.png)" in md and "[ball_right](../review/ball_right.html)" in md
    first = (run_dir / "out" / "report.html").read_bytes()
    assert make_report(run_dir).returncode == 0
    assert (run_dir / "out" / "report.html").read_bytes() == first   # no date: the same inputs, the same bytes


def test_report_bad_input(run_dir):
    (run_dir / "scores.jsonl").write_text('{"target": "right", "layer": "block1", "score": 0.5}\n')
    result = run_cmd("vt-report", run_dir / "scores.jsonl", "-o", run_dir / "r.html")
    assert result.returncode == 1 and result.stderr.startswith("vt-report: error:")
    assert "scores.jsonl:1: not a vt-stats record" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = run_cmd("vt-report", run_dir / "stats.jsonl", "--figure", run_dir / "nope.png", "-o", run_dir / "r.html")
    assert result.returncode == 1 and "nope.png: no such file" in result.stderr and not (run_dir / "r.html").exists()
    result = run_cmd("vt-report", run_dir / "stats.jsonl", "-o", run_dir / "r.txt")
    assert result.returncode == 2


@pytest.mark.skipif(CHROMIUM is None, reason="no headless browser: install Debian's chromium "
                                             "(apt-get install -y chromium) to check the report renders")
def test_report_renders_in_headless_browser(run_dir):
    assert make_report(run_dir).returncode == 0
    page = (run_dir / "out" / "report.html").resolve().as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    table = re.search(r'<table id="significance">(.*?)</table>', dom.stdout, re.S)
    assert table, "the browser's DOM has no significance table"
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table.group(1), re.S)
    assert len(rows) == 1 + 6
    assert re.sub(r"<[^>]+>", "|", rows[3]).count("ball_right") == 1 and "1e-06" in rows[3]
    shot = run_dir / "shot.png"
    result = subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1100,900", page],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    image = cv2.imread(str(shot))
    assert image.shape[:2] == (900, 1100)
    # the rendered page shows the table's green rows and the figure, not a blank or an error page
    green = np.all(np.abs(image.astype(int) - (0xe3, 0xf4, 0xe3)) <= 2, axis=2).sum()
    assert green > 1000
