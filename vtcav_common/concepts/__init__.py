"""Mining concept clips from detections, and drawing random clips (the logic of vt-concepts).

Three kinds of clip, all ``T x H x W x 3`` uint8 RGB:

- **spatial**: one frame's crop of an object, repeated over the T frames (static);
- **spatiotemporal**: the same object along its track over T frames (dynamic), cut
  either through a fixed *window* around the union of the track's boxes over the clip
  (the object moves inside it: the motion survives) or a window that *follows* the box
  (the object stays put and the background slides the other way: the motion cue is
  destroyed or inverted);
- **random**: random windows at random start frames of random videos.

One module a job: :mod:`.catalog` (videos, filters, tracks), :mod:`.plans` (which clips)
and :mod:`.render` (cutting them).  The work is planned first from metadata alone
(detections, video headers), then the pixels are cut video by video, so memory holds one
video's frames and one batch of clips at a time.

Example (run by tests/test_examples.py in a vt-synth world)::

    from vtcav_common.concepts import DetectionFilter, VideoCatalog, load_tracks, plan_spatiotemporal, render_plans
    from vtcav_common.formats.clips import ClipSetWriter, Sampling

    sampling = Sampling(frames=16, size=(64, 64))
    catalog = VideoCatalog.open("world/labels.jsonl")
    tracks, _ = load_tracks("world/gt.jsonl", DetectionFilter(classes=frozenset({"ball"})), catalog)
    plans, stats = plan_spatiotemporal(tracks, "ball", sampling, geometry="window")
    with ClipSetWriter("concepts.h5", sampling, "vt-concepts", {}) as writer:
        render_plans(plans, {"ball": writer.add_set("ball", "spatiotemporal", "concept")}, sampling)
"""

from ..core.parsing import parse_size
from .catalog import DetectionFilter, LabelFilter, Track, VideoCatalog, VideoEntry, load_tracks
from .plans import (RANDOM_MIN_FRACTION, ClipPlan, PlanStats, RandomDraw, limit, plan_random, plan_spatial,
                    plan_spatiotemporal, spread)
from .render import (DEFAULT_CONTEXT, FLUSH_EVERY, by_video, context_window, crop_resize, cut_clip, render_plans,
                     union_box, windows_for)

__all__ = ["DEFAULT_CONTEXT", "FLUSH_EVERY", "RANDOM_MIN_FRACTION", "ClipPlan", "DetectionFilter", "LabelFilter",
           "PlanStats", "RandomDraw", "Track", "VideoCatalog", "VideoEntry", "by_video", "context_window",
           "crop_resize", "cut_clip", "limit", "load_tracks", "parse_size", "plan_random", "plan_spatial",
           "plan_spatiotemporal", "render_plans", "spread", "union_box", "windows_for"]
