"""Relevance maps of a video model over ``T x H x W``: Grad-CAM, gradients, gradient x input.

Every map is computed from ONE forward and ONE backward pass of one clip, at the
model's input sampling (``InputSpec``: ``frames`` sampled uniformly from the video,
resized to ``size``), and is returned on that grid as a non-negative
``T x H x W`` float32 array.

- ``gradcam`` (Selvaraju et al. 2017, extended to space-time) at a layer with
  activations ``A`` and gradients ``G = d logit_k / d A``, both ``C x T' x H' x W'``:
  ``w_c = mean_{t,y,x} G_c``, ``map = ReLU(sum_c w_c A_c)``, upsampled trilinearly
  (``align_corners=False``) to the input's ``T x H x W``. The layer's channel axis
  comes from :func:`vtcav_common.models.layers.describe_layers` (declared layouts,
  then the kind of module): channels-first ``C x T x H x W`` (3D CNNs) and
  channels-last ``T x H x W x C`` (Video Swin) are moved to channels-first. Tokens
  ``L x C`` (MViT) are put on their ``T' x H' x W'`` grid, taken from the block's own
  output when it returns one (torchvision's MViT blocks return ``(x, thw)``) or from
  ``grid=(T', H', W')``; with ``L = T'H'W' + 1`` the first token is a class token and is
  dropped.
- ``gradient``: ``|d logit_k / d x|`` summed over the colour channels, where ``x`` is
  the normalised input clip the model sees.
- ``gradxinput``: ``|sum_colour x · d logit_k / d x|`` (the channel sum of captum's
  InputXGradient, made non-negative like the other maps).

``k`` is the target class: given, or the predicted class of each clip.

Example::

    loaded = load_model("vtcav_common.models.tiny:motion_c3d", "weights/classifier.pt")
    explainer = Explainer(loaded, "gradcam", layer="block1")
    result = explainer(preprocess(clip[None], loaded.input_spec))   # clip: T x H x W x 3 uint8
    result.relevance.shape   # (16, 64, 64)
"""

from __future__ import annotations

import collections
import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from . import cli, h5io, overlay
from .errors import UsageError, VtcavError
from .models.base import LayerRecorder, LoadedModel, preprocess
from .models.layers import LayerInfo, default_layers, describe_layers, model_device, resolve_layers
from .records import filter_manifest, looks_like_manifest, read_manifest
from .selective import (MassCounter, SampledVideo, box_mask, read_moving_boxes, sample_with_motion,
                        selective_filter)
from .video import find_videos, iter_frames, probe

METHODS = ("gradcam", "gradient", "gradxinput")


@dataclass
class Explanation:
    """One clip's relevance map and the model's verdict on it."""

    relevance: np.ndarray        # T x H x W float32, >= 0, at the model's input grid
    probabilities: np.ndarray    # K float32 (softmax of the logits)
    target_index: int
    predicted_index: int


# --------------------------------------------------------------------------- layer geometry
def to_channels_first(tensor: torch.Tensor, channel_axis: int | None,
                      grid: tuple[int, int, int] | None = None, layer: str = "?") -> torch.Tensor:
    """One sample's layer output as ``C x T x H x W`` (see the module docstring)."""
    shape = tuple(tensor.shape)
    if tensor.ndim == 4 and channel_axis is not None:
        return tensor.movedim(channel_axis, 0)       # C x T x H x W or T x H x W x C
    if tensor.ndim == 2 and channel_axis == 1:
        return tokens_to_volume(tensor, grid, layer)
    raise UsageError(f"layer {layer}: output of shape {'x'.join(map(str, shape))} (channel axis {channel_axis}) "
                     f"has no space-time grid; Grad-CAM needs C x T x H x W, T x H x W x C or tokens L x C "
                     f"(see vt-embed --list-layers)")


def tokens_to_volume(tokens: torch.Tensor, grid: tuple[int, int, int] | None, layer: str) -> torch.Tensor:
    """Tokens ``L x C`` on a ``T' x H' x W'`` grid -> ``C x T' x H' x W'`` (class token dropped)."""
    if grid is None:
        raise UsageError(f"layer {layer} gives tokens ({tokens.shape[0]} x {tokens.shape[1]}) without their "
                         f"grid; give --grid T,H,W (tokens per axis)")
    t, h, w = grid
    count = tokens.shape[0]
    if count == t * h * w + 1:
        tokens = tokens[1:]                              # a leading class token
    elif count != t * h * w:
        raise UsageError(f"layer {layer}: {count} tokens do not fit the grid {t}x{h}x{w} "
                         f"({t * h * w} tokens, or one more with a class token)")
    return tokens.reshape(t, h, w, -1).permute(3, 0, 1, 2)


def grad_cam(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """``ReLU(sum_c w_c A_c)`` with ``w_c`` the gradient averaged over space-time (C x T x H x W in)."""
    weights = gradient.mean(dim=(1, 2, 3))
    return torch.relu(torch.einsum("c,cthw->thw", weights, activation))


def upsample_volume(volume: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """Trilinear resampling of a ``T x H x W`` map to ``size`` (align_corners=False)."""
    if tuple(volume.shape) == tuple(size):
        return volume
    return F.interpolate(volume[None, None].float(), size=size, mode="trilinear", align_corners=False)[0, 0]


def colour_axis(layout: str) -> int:
    """The colour axis of a clip tensor (batch axis included)."""
    return 1 if layout == "NCTHW" else 2


def default_cam_layer(loaded: LoadedModel, infos: dict[str, LayerInfo]) -> str:
    """The deepest of the usual layers whose output is a space-time volume."""
    volumes = [name for name in default_layers(loaded.module) if _is_volume(infos.get(name))]
    if not volumes:
        raise UsageError("this model has no usual layer with a C x T x H x W output; choose one with --layer "
                         "(see vt-embed --list-layers)")
    return volumes[-1]


def _is_volume(info: LayerInfo | None) -> bool:
    """A 4-D output (channels and three more axes) that is more than one voxel (not pooled away)."""
    if info is None or not info.shape or len(info.shape) != 4 or info.channel_axis is None:
        return False
    return int(np.prod(info.shape)) > info.shape[info.channel_axis]


# --------------------------------------------------------------------------- the explainer
class _GridProbe:
    """Remembers a token grid that a block returns beside its tokens: ``(x, (T, H, W))``."""

    def __init__(self, module: torch.nn.Module):
        self.grid: tuple[int, int, int] | None = None
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, _module, _inputs, output) -> None:
        if isinstance(output, (tuple, list)) and len(output) == 2:
            candidate = output[1]
            if isinstance(candidate, (tuple, list)) and len(candidate) == 3 and \
                    all(isinstance(v, int) for v in candidate):
                self.grid = tuple(int(v) for v in candidate)

    def remove(self) -> None:
        self._handle.remove()


class Explainer:
    """Relevance maps of one model by one method; call it on a preprocessed ``1 x ...`` clip."""

    def __init__(self, loaded: LoadedModel, method: str, layer: str | None = None,
                 grid: tuple[int, int, int] | None = None):
        if method not in METHODS:
            raise UsageError(f"unknown method '{method}'; choose {', '.join(METHODS)}")
        self.loaded, self.method, self.grid = loaded, method, grid
        self.layer: str | None = None
        self.channel_axis: int | None = None
        if method == "gradcam":
            self._choose_layer(layer)
        elif layer is not None:
            raise UsageError(f"--layer is for --method gradcam; {method} explains the input itself")

    def _choose_layer(self, layer: str | None) -> None:
        if layer is not None:
            resolve_layers(self.loaded, [layer])
        infos = describe_layers(self.loaded)
        layer = layer or default_cam_layer(self.loaded, infos)
        info = infos[layer]
        if info.shape is None:
            raise UsageError(f"layer {layer} never runs (or gives no tensor) in a forward pass; choose another")
        if info.calls > 1:
            raise UsageError(f"layer {layer} runs {info.calls} times per forward pass, so its activation is "
                             f"ambiguous; choose a layer that runs once")
        if not (len(info.shape) == 4 or (len(info.shape) == 2 and info.channel_axis == 1)):
            to_channels_first(torch.zeros(info.shape), info.channel_axis, self.grid, layer)  # raises the error
        self.layer, self.channel_axis = layer, info.channel_axis

    @property
    def input_size(self) -> tuple[int, int, int]:
        spec = self.loaded.input_spec
        return spec.frames, spec.size[0], spec.size[1]

    def __call__(self, x: torch.Tensor, target_index: int | None = None) -> Explanation:
        """``x``: one preprocessed clip with its batch axis; ``target_index`` None = predicted."""
        module = self.loaded.module
        x = self._pad_batch(x.detach()).requires_grad_(True)
        probe = _GridProbe(dict(module.named_modules())[self.layer]) if self.layer else None
        try:
            with LayerRecorder(module, [self.layer] if self.layer else []) as recorder, torch.enable_grad():
                output = module(x)
                logits = output[0] if isinstance(output, (tuple, list)) else output
                probabilities = torch.softmax(logits[0].detach().float(), dim=0)
                predicted = int(probabilities.argmax())
                target = predicted if target_index is None else int(target_index)
                wrt = recorder.outputs[self.layer] if self.layer else x
                (gradient,) = torch.autograd.grad(logits[0, target], wrt, allow_unused=True)
        finally:
            if probe is not None:
                probe.remove()
        if gradient is None:
            raise VtcavError(f"layer {self.layer} received no gradient from the logits; choose another layer")
        if self.layer:
            grid = probe.grid or self.grid
            relevance = self._cam(wrt[0].detach(), gradient[0], grid)
        else:
            relevance = self._input_map(x[0].detach(), gradient[0])
        return Explanation(relevance.float().cpu().numpy().astype(np.float32),
                           probabilities.cpu().numpy().astype(np.float32), target, predicted)

    def _pad_batch(self, x: torch.Tensor) -> torch.Tensor:
        """A static-batch program (torch.export) takes exactly ``fixed_batch`` clips."""
        fixed = self.loaded.fixed_batch
        if x.shape[0] != 1:
            raise ValueError(f"Explainer takes one clip at a time, got a batch of {x.shape[0]}")
        if fixed and fixed > 1:
            x = torch.cat([x, x.new_zeros((fixed - 1, *x.shape[1:]))])
        return x

    def _cam(self, activation: torch.Tensor, gradient: torch.Tensor,
             grid: tuple[int, int, int] | None) -> torch.Tensor:
        acts = to_channels_first(activation, self.channel_axis, grid, self.layer).float()
        grads = to_channels_first(gradient, self.channel_axis, grid, self.layer).float()
        if not grads.any():
            # E.g. MViT's last block: the head reads only the class token, so the space-time
            # tokens get no gradient and every map would be zero.
            raise VtcavError(f"layer {self.layer}: its space-time positions get no gradient from the logits "
                             f"(does the model read out a class token after it?); choose an earlier layer")
        return upsample_volume(grad_cam(acts, grads), self.input_size).clamp_min(0)

    def _input_map(self, clip: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        axis = colour_axis(self.loaded.input_spec.layout) - 1       # no batch axis here
        if self.method == "gradient":
            return gradient.abs().sum(dim=axis)
        return (gradient * clip).sum(dim=axis).abs()


# --------------------------------------------------------------------------- the whole run
@dataclass(frozen=True)
class VideoItem:
    video_id: str
    path: str
    label: str | None = None


@dataclass(frozen=True)
class ExplainOptions:
    """Everything vt-explain was asked, besides the model and the videos."""

    method: str = "gradcam"
    layer: str | None = None
    grid: tuple[int, int, int] | None = None
    target: str | None = None                # a class name or index; None = each clip's prediction
    sigma: float | None = None               # the selective filter's threshold; None = no selective map
    motion_threshold: float = 25.0           # grey levels of frame-to-frame change that count as motion
    gt: str | None = None                    # detections/gt JSONL whose `moving` boxes mark motion instead
    pictures: str | None = None              # folder for the PNG strips and overlay videos
    picture_format: str = "gif"
    strip_frames: int = 8
    picture_scale: int = 0                   # integer enlargement of the pictures; 0 = automatic
    seed: int = 0


def gather_videos(inputs: list[str], labels: list[str], split: str | None) -> list[VideoItem]:
    """Videos from manifests (filtered by label and split), folders and plain video paths."""
    if not inputs:
        raise UsageError("give videos, a folder of videos or a labels manifest (.jsonl, '-' for stdin)")
    manifests = [p for p in inputs if p == "-" or looks_like_manifest(p)]
    if (labels or split) and not manifests:
        raise UsageError("--label/--split filter a labels manifest (.jsonl); no manifest was given")
    videos: list[VideoItem] = []
    for item in inputs:
        if item in manifests:
            videos += _filtered(read_manifest(item), labels, split, cli.display_name(item))
        elif Path(item).is_dir():
            videos += [VideoItem(p.stem, str(p)) for p in find_videos(item)]
        else:
            videos.append(VideoItem(Path(item).stem, item))
    counts = collections.Counter(v.video_id for v in videos)
    repeated = sorted(i for i, n in counts.items() if n > 1)
    if repeated:
        raise UsageError(f"video id(s) given twice: {', '.join(repeated[:5])}")
    if not videos:
        raise UsageError("no videos to explain")
    return videos


def _filtered(entries, labels: list[str], split: str | None, name: str) -> list[VideoItem]:
    entries = filter_manifest(entries, labels, split, name)
    return [VideoItem(e.video_id, e.path, e.label) for e in entries]


def explain_videos(loaded: LoadedModel, videos: list[VideoItem], output: str | Path | None,
                   options: ExplainOptions, records: IO[str], tool: str = "vt-explain") -> dict:
    """Explain each video; write maps (HDF5), pictures and one JSON record per video."""
    if options.sigma is not None and options.sigma < 0:
        raise UsageError(f"--selective takes a number of standard deviations >= 0, got {options.sigma}")
    explainer = Explainer(loaded, options.method, options.layer, options.grid)
    target_index = None if options.target is None else loaded.class_index(str(options.target))
    for video in videos:           # refuse missing or unreadable files before writing anything
        probe(video.path)
    boxes = None
    if options.gt:
        boxes = read_moving_boxes(options.gt, {v.video_id for v in videos})
    torch.manual_seed(options.seed)
    provenance = _provenance(loaded, explainer, options, target_index, videos)
    shares: dict[str, list[float]] = {"plain": [], "selective": []}
    with (h5io.create(output, "relevance", tool, provenance) if output else contextlib.nullcontext()) as handle:
        sink = (_MapSink(handle, len(videos), explainer.input_size, options.sigma is not None, loaded.class_names)
                if handle else None)
        for row, video in enumerate(cli.progress(videos, total=len(videos), description="explain")):
            outcome = _explain_one(loaded, explainer, video, options, target_index, boxes)
            if sink:
                sink.write(row, video, outcome)
            if options.pictures:
                _pictures(video, outcome, options, explainer)
            record = _record(loaded, explainer, video, outcome, options)
            records.write(json.dumps(record, separators=(",", ":")) + "\n")
            records.flush()
            for kind in shares:
                if outcome.shares.get(kind) is not None:
                    shares[kind].append(outcome.shares[kind])
    return {"videos": len(videos), "layer": explainer.layer,
            "mean_share": {k: (float(np.mean(v)) if v else None) for k, v in shares.items()}}


@dataclass
class _Outcome:
    sampled: SampledVideo
    explanation: Explanation
    selective: np.ndarray | None
    shares: dict[str, float | None]
    moving_fraction: float


def _explain_one(loaded: LoadedModel, explainer: Explainer, video: VideoItem, options: ExplainOptions,
                 target_index: int | None, boxes: dict | None) -> _Outcome:
    sampled = sample_with_motion(video.path, loaded.input_spec.frames, options.motion_threshold)
    x = preprocess(sampled.frames[None], loaded.input_spec, model_device(loaded.module))
    explanation = explainer(x, target_index)
    selective = None if options.sigma is None else selective_filter(explanation.relevance, options.sigma)
    height, width = sampled.frames.shape[1:3]
    if boxes is not None:
        per_frame = boxes.get(video.video_id, {})
        if not per_frame:
            cli.warn(f"{options.gt}: no moving boxes for video {video.video_id}; its motion share is 0")
        moving = np.stack([box_mask(per_frame.get(int(i), []), height, width) for i in sampled.indices])
    else:
        moving = sampled.moving
    maps = {"plain": explanation.relevance, "selective": selective}
    counters = {kind: MassCounter() for kind, m in maps.items() if m is not None}
    for i in range(len(sampled.indices)):   # at the source's size, one frame at a time
        for kind, counter in counters.items():
            counter.add(overlay.resize_map(maps[kind][i], height, width), moving[i])
    return _Outcome(sampled, explanation, selective, {k: c.share() for k, c in counters.items()},
                    float(moving.mean()))


class _MapSink:
    """The relevance file's datasets, one row per video, written as each video is done."""

    def __init__(self, handle, n: int, size: tuple[int, int, int], selective: bool, class_names: list[str]):
        self.class_names = class_names
        t = size[0]
        strings = h5py.string_dtype()
        self.strings = {name: handle.create_dataset(name, shape=(n,), dtype=strings, track_times=False)
                        for name in ("ids", "paths", "labels", "targets", "predicted")}
        self.numbers = {
            "target_index": h5io.dataset(handle, "target_index", shape=(n,), dtype=np.int32),
            "predicted_index": h5io.dataset(handle, "predicted_index", shape=(n,), dtype=np.int32),
            "probability": h5io.dataset(handle, "probability", shape=(n,), dtype=np.float32),
            "target_probability": h5io.dataset(handle, "target_probability", shape=(n,), dtype=np.float32),
            "frame_indices": h5io.dataset(handle, "frame_indices", shape=(n, t), dtype=np.int32),
            "source_frames": h5io.dataset(handle, "source_frames", shape=(n,), dtype=np.int32),
            "source_size": h5io.dataset(handle, "source_size", shape=(n, 2), dtype=np.int32),
            "motion_share": h5io.dataset(handle, "motion_share", shape=(n, 2), dtype=np.float32),
            "moving_fraction": h5io.dataset(handle, "moving_fraction", shape=(n,), dtype=np.float32),
        }
        map_options = dict(shape=(n, *size), dtype=np.float32, chunks=(1, *size), compression="gzip",
                           compression_opts=4, shuffle=True)
        self.plain = h5io.dataset(handle, "plain", **map_options)
        self.selective = h5io.dataset(handle, "selective", **map_options) if selective else None

    def write(self, row: int, video: VideoItem, outcome: _Outcome) -> None:
        result, sampled = outcome.explanation, outcome.sampled
        names = self.class_names
        for name, value in (("ids", video.video_id), ("paths", video.path), ("labels", video.label or ""),
                            ("targets", names[result.target_index]), ("predicted", names[result.predicted_index])):
            self.strings[name][row] = value
        self.numbers["target_index"][row] = result.target_index
        self.numbers["predicted_index"][row] = result.predicted_index
        self.numbers["probability"][row] = result.probabilities[result.predicted_index]
        self.numbers["target_probability"][row] = result.probabilities[result.target_index]
        self.numbers["frame_indices"][row] = sampled.indices
        self.numbers["source_frames"][row] = sampled.source_frames
        self.numbers["source_size"][row] = sampled.frames.shape[1:3]
        self.numbers["motion_share"][row] = [_nan(outcome.shares.get("plain")), _nan(outcome.shares.get("selective"))]
        self.numbers["moving_fraction"][row] = outcome.moving_fraction
        self.plain[row] = result.relevance
        if self.selective is not None:
            self.selective[row] = outcome.selective


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _provenance(loaded: LoadedModel, explainer: Explainer, options: ExplainOptions, target_index: int | None,
                videos: list[VideoItem]) -> dict:
    motion = ({"source": "gt", "file": Path(options.gt).name} if options.gt else
              {"source": "frame-difference", "threshold": options.motion_threshold})
    return {"model": loaded.provenance, "input": loaded.input_spec.to_dict(), "method": options.method,
            "layer": explainer.layer, "grid": list(options.grid) if options.grid else None,
            "target": None if target_index is None else loaded.class_names[target_index],
            "target_index": target_index, "target_rule": "given" if target_index is not None else "predicted",
            "sigma": options.sigma, "selective_kernel": "temporal sobel 3x3x3, replicate padding",
            "motion": motion, "seed": options.seed, "videos": len(videos)}


def _record(loaded: LoadedModel, explainer: Explainer, video: VideoItem, outcome: _Outcome,
            options: ExplainOptions) -> dict:
    result = outcome.explanation
    names = loaded.class_names
    record = {"video_id": video.video_id}
    if video.label is not None:
        record["label"] = video.label
    record.update({
        "target": names[result.target_index], "target_index": result.target_index,
        "target_probability": round(float(result.probabilities[result.target_index]), 4),
        "predicted": names[result.predicted_index], "predicted_index": result.predicted_index,
        "probability": round(float(result.probabilities[result.predicted_index]), 4),
        "method": options.method, "layer": explainer.layer, "sigma": options.sigma,
        "motion": "gt" if options.gt else "frame-difference",
        "motion_share": {k: (None if v is None else round(v, 4)) for k, v in outcome.shares.items()},
        "moving_fraction": round(outcome.moving_fraction, 4),
    })
    return record


def picture_stem(video_id: str) -> str:
    """A video id as a file name (path separators replaced)."""
    return video_id.replace("/", "_").replace("\\", "_") or "video"


def _pictures(video: VideoItem, outcome: _Outcome, options: ExplainOptions, explainer: Explainer) -> None:
    folder = Path(options.pictures)
    folder.mkdir(parents=True, exist_ok=True)
    sampled, plain = outcome.sampled, outcome.explanation.relevance
    scale = overlay.map_scale(plain)
    enlarge = options.picture_scale or overlay.auto_scale(*sampled.frames.shape[1:3])
    what = options.method + (f" {explainer.layer}" if explainer.layer else "")
    rows = [(f"plain: {what}", plain)]
    if outcome.selective is not None:
        rows.append((f"selective: sigma {options.sigma:g}", outcome.selective))
    columns = overlay.strip_columns(len(sampled.indices), options.strip_frames)
    stem = picture_stem(video.video_id)
    times = [f"{sampled.indices[c] / sampled.fps:.2f} s (f{sampled.indices[c]})" if sampled.fps else
             f"frame {sampled.indices[c]}" for c in columns]
    overlay.write_png(folder / f"{stem}.png",
                      overlay.strip_image(sampled.frames, rows, columns, scale, enlarge, times, options.method))
    frames = overlay.overlay_frames(iter_frames(video.path), sampled.indices, [m for _, m in rows], scale, enlarge)
    overlay.write_overlay_video(folder / f"{stem}.{options.picture_format}", frames, sampled.fps,
                                options.picture_format)
