"""Bring what other tools made into vtcav's formats.

- :mod:`.detections`: tracks and boxes (MOTChallenge, COCO-style video annotations as
  TAO and YouTube-VIS write them, the per-frame text files of ``yolo track save_txt=True``)
  to detection JSONL records;
- :mod:`.manifests`: mmaction2's list files (``path label``) to a labels manifest;
- :mod:`.clips`: a folder of clip videos or an ``.npy``/``.npz`` array to a clip set.

What a file does not say but the video does (frame size, frame rate, frame count, the
video's id) is read from the video, never asked of the user.
"""

from .detections import DETECTION_FORMATS, ImportSettings, detect_format, import_detections  # noqa: F401
