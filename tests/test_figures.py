"""The pictures researchers put in papers say what they show: vt-explain strips carry frame times and
a colour bar with its scale; contact and review sheets caption each row with its source and time span."""

from __future__ import annotations

import numpy as np

from vtcav_common.explain import overlay
from vtcav_common.ace.sheets import contact_sheet


def jet_column(image: np.ndarray) -> np.ndarray | None:
    """The x of a column whose colours run from JET's dark red (top) to dark blue (bottom), if any."""
    for x in range(image.shape[1] - 1, -1, -1):
        column = image[:, x].astype(int)
        red = np.where((column[:, 0] > 100) & (column[:, 1] < 40) & (column[:, 2] < 40))[0]
        blue = np.where((column[:, 2] > 100) & (column[:, 0] < 40) & (column[:, 1] < 40))[0]
        if len(red) and len(blue) and red.max() < blue.min():
            return x
    return None


def test_strip_has_times_and_colour_bar():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    maps = np.zeros((6, 8, 8), np.float32)
    maps[:, 2:4, 2:4] = 1.0
    plain = overlay.strip_image(frames, [("plain", maps)], [0, 5], scale=1.0, enlarge=4)
    timed = overlay.strip_image(frames, [("plain", maps)], [0, 5], scale=1.0, enlarge=4,
                                times=["0.00 s (f0)", "0.50 s (f5)"])
    tiles = 2 * 32 * 4 + overlay.GAP
    assert plain.shape[1] == tiles + 64                         # the colour bar beside the tiles
    assert timed.shape[0] == plain.shape[0] + overlay.BAND      # the band of frame times above them
    assert timed[:overlay.BAND, :tiles].min() < 128             # ... with text in it
    x = jet_column(plain)
    assert x is not None and x >= tiles                          # hot on top, cold below, right of the tiles


def test_overlay_video_frames_carry_their_time_captions_and_colour_bar():
    rng = np.random.default_rng(1)
    source = [(i, rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for i in range(4)]
    maps = [rng.random((2, 8, 8)).astype(np.float32) for _ in range(2)]
    frames = list(overlay.overlay_frames(iter(source), np.array([0, 3]), maps, 1.0, enlarge=4,
                                         captions=["plain: gradcam", "selective: sigma 1"], fps=10.0))
    tiles_width = 2 * 32 * 4 + overlay.GAP
    assert [f.shape for f in frames] == [(2 * overlay.BAND + 128, tiles_width + 64, 3)] * 4
    assert jet_column(frames[0][:, tiles_width:]) is not None           # the colour bar, on every frame
    top = [f[:overlay.BAND, :tiles_width] for f in frames]
    assert not np.array_equal(top[0], top[1])                           # "0.00 s (f0)" vs "0.10 s (f1)"
    captions = frames[0][overlay.BAND:2 * overlay.BAND, :tiles_width]
    assert (captions < 128).any(axis=2)[:, :128].any() and (captions < 128).any(axis=2)[:, 130:].any()


def test_contact_sheet_captions_rows():
    clips = np.full((2, 4, 16, 16, 3), 200, np.uint8)
    bare = contact_sheet(clips, "ace_00", frames=2, scale=2)
    captioned = contact_sheet(clips, "ace_00", frames=2, scale=2, captions=["v1  0.10-0.50 s", "v2  frames 3-9"],
                              column_labels=["f0", "f3"])
    assert captioned.shape[0] > bare.shape[0]
    assert captioned.shape[1] >= 7 * len("v1  0.10-0.50 s")     # the caption fits its row
    assert (captioned[:, :, 2].astype(int) - captioned[:, :, 0] > 60).any()   # the dark-blue caption ink
