"""vt-embed's engine: activations (and target-logit gradients) of many layers, streamed to HDF5.

For each batch of clips there is ONE forward pass with hooks on every requested layer
(:class:`~vtcav_common.models.base.LayerRecorder`) and, with a target class, ONE
backward pass of ``logits[:, k].sum()`` that gives the gradient at every layer. Each
batch is written to its rows of the output file before the next batch is read, so
memory holds one batch whatever the number of clips.

Output layout (kind ``embeddings``, schema 1)::

    / attrs: vtcav_kind, schema_version, tool, tool_version, provenance (JSON):
             {"model": {...}, "layers": [...], "input": InputSpec, "target", "target_index",
              "dtype", "grad_dtype", "inputs": <file name>, "sets": [...], "seed"}
    /sets/<name>/          attrs: kind, role, n
        ids         str      N      "video_id#i" (clip i of a clip set) or the manifest's video_id
        labels      str      N      (manifest inputs only) each video's label
        logits      float32  N x K
        acts/<layer>    dtype        N x (layer's per-sample shape)
        grads/<layer>   grad_dtype   N x (same)        (only with a target)
    /layers/<layer>        attrs: name, shape, channel_axis, channels_last, type

Layer names are used as HDF5 names, except that ``%`` and ``/`` are escaped as ``%25``
and ``%2F`` (a ``/`` would make a nested group); the real name is kept in each
dataset's and ``/layers`` group's ``name`` attribute.

Example::

    loaded = load_model("vtcav_common.models.tiny:motion_c3d", "weights/classifier.pt")
    sets = clipset_inputs("concepts.h5", [], loaded.input_spec)
    embed(loaded, ["block2", "block3"], sets, "acts.h5", target="right", inputs_name="concepts.h5")
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import h5py
import numpy as np
import torch

from . import cli, h5io
from .embeddings import EmbeddingsWriter, SetSink, _cast, h5_name, layer_from_h5  # noqa: F401  (owns the kind)
from .errors import UsageError, VtcavError
from .models.base import LayerRecorder, LoadedModel, preprocess, temporal_indices
from .models.layers import LayerInfo, describe_layers, model_device, resolve_layers
from .records import filter_manifest, read_manifest
from .video import probe, read_frames, read_video

TOOL = "vt-embed"
DTYPES = {"float16": np.float16, "float32": np.float32}
MANIFEST_SET = "inputs"


# --------------------------------------------------------------------------- inputs
@dataclass
class InputBatch:
    ids: list[str]
    clips: np.ndarray | list[np.ndarray]   # uint8 n x T x H x W x 3, or one T x H x W x 3 per video
    labels: list[str] | None = None


@dataclass
class InputSet:
    """One group of the output: a name, attributes, and its clips as lazy batches."""

    name: str
    kind: str
    role: str
    n: int
    batches: Callable[[int], Iterator[InputBatch]]
    has_labels: bool = False


def clipset_inputs(path: str, names: list[str]) -> list[InputSet]:
    """The sets of a clip-set file (all, or ``names`` in that order), streamed from disk."""
    from . import clipsets

    infos = {info.name: info for info in clipsets.list_sets(path)}
    for name in names:
        if name not in infos:
            raise UsageError(f"{path}: no clip set '{name}' (sets: {', '.join(infos) or 'none'})")
    chosen = [infos[n] for n in names] if names else list(infos.values())
    if not chosen:
        raise VtcavError(f"{path}: clip-set file holds no sets")
    return [InputSet(info.name, info.kind, info.role, info.n, _clip_batches(path, info.name)) for info in chosen]


def _clip_batches(path: str, name: str) -> Callable[[int], Iterator[InputBatch]]:
    from . import clipsets

    def batches(batch_size: int, rows: range | None = None) -> Iterator[InputBatch]:
        with clipsets.open_clipset(path) as handle:
            group = handle[clipsets.ROOT][name]
            clips, video_ids = group["clips"], group["video_id"]
            rows = rows if rows is not None else range(clips.shape[0])   # a shard's rows (vtcav_common.shard)
            for start in range(rows.start, rows.stop, batch_size):
                stop = min(start + batch_size, rows.stop)
                ids = [v.decode() if isinstance(v, bytes) else str(v) for v in video_ids[start:stop]]
                yield InputBatch([f"{vid}#{i}" for i, vid in zip(range(start, stop), ids)], clips[start:stop])
    return batches


def manifest_inputs(path: str, frames: int, labels: list[str], split: str | None,
                    name: str = MANIFEST_SET) -> list[InputSet]:
    """The videos of a labels manifest (filtered by label and split) as one set."""
    videos = filter_manifest(read_manifest(path), labels, split, cli.display_name(path))

    def batches(batch_size: int, rows: range | None = None) -> Iterator[InputBatch]:
        chosen = videos if rows is None else videos[rows.start:rows.stop]   # a shard's rows
        for start in range(0, len(chosen), batch_size):
            chunk = chosen[start:start + batch_size]
            yield InputBatch([v.video_id for v in chunk], [sample_video(v.path, frames) for v in chunk],
                             [v.label for v in chunk])

    return [InputSet(name, "inputs", "inputs", len(videos), batches, has_labels=True)]


def sample_video(path: str, frames: int) -> np.ndarray:
    """``frames`` frames spread uniformly over the video, decoding only up to the last one needed."""
    count = probe(path).frames
    if count > 0:
        indices = temporal_indices(count, frames)
        try:
            decoded = read_frames(path, sorted(set(indices.tolist())))
            return np.stack([decoded[i] for i in indices])
        except VtcavError:
            pass  # the container's frame count was wrong: decode everything instead
    video = read_video(path)
    return video[temporal_indices(len(video), frames)]


def to_tensor(batch: InputBatch, loaded: LoadedModel, device: torch.device) -> torch.Tensor:
    """Uniform temporal sampling, resize and normalisation by the model's InputSpec."""
    spec = loaded.input_spec
    if isinstance(batch.clips, list):  # videos of different sizes: preprocess one by one
        return torch.cat([preprocess(clip[None], spec, device) for clip in batch.clips])
    return preprocess(batch.clips, spec, device)


# --------------------------------------------------------------------------- model pass
@dataclass
class BatchResult:
    logits: np.ndarray                      # n x K float32
    acts: dict[str, np.ndarray]             # layer -> n x shape (float32)
    grads: dict[str, np.ndarray] | None     # layer -> n x shape (float32), with a target


@contextlib.contextmanager
def _parameters_frozen(module: torch.nn.Module):
    """No gradients for parameters: the backward pass then only computes what we keep."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 autocast on CUDA (fp16 where the GPU lacks bf16), fp32 on the CPU."""
    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


class LayerPass:
    """Activations of ``layers`` (and gradients of the target logit) for a batch of clips.

    With ``precision`` bf16/fp16 the forward runs under autocast (convolutions and matmuls
    in half precision, accumulating in fp32); the target logit is taken in fp32 before the
    backward pass, and everything stored is widened to fp32 first.
    """

    def __init__(self, loaded: LoadedModel, layers: list[str], target_index: int | None = None,
                 precision: str = "fp32"):
        self.loaded = loaded
        self.layers = layers
        self.target_index = target_index
        self.precision = precision

    def _autocast(self, device: torch.device):
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def __call__(self, x: torch.Tensor) -> BatchResult:
        step = self.loaded.fixed_batch or len(x)
        parts = [self._run(x[start:start + step]) for start in range(0, len(x), step)]
        if len(parts) == 1:
            return parts[0]
        return BatchResult(np.concatenate([p.logits for p in parts]),
                           {k: np.concatenate([p.acts[k] for p in parts]) for k in self.layers},
                           None if self.target_index is None else
                           {k: np.concatenate([p.grads[k] for p in parts]) for k in self.layers})

    def _run(self, x: torch.Tensor) -> BatchResult:
        n = len(x)
        if self.loaded.fixed_batch and n < self.loaded.fixed_batch:  # a static-batch program
            padding = x.new_zeros((self.loaded.fixed_batch - n, *x.shape[1:]))
            x = torch.cat([x, padding])
        module = self.loaded.module
        if self.target_index is None:
            with LayerRecorder(module, self.layers) as recorder, torch.no_grad(), self._autocast(x.device):
                logits = _logits(module(x))
            acts = recorder.activations()
            return BatchResult(_numpy(logits, n), {k: _numpy(v, n) for k, v in acts.items()}, None)
        with _parameters_frozen(module), LayerRecorder(module, self.layers, keep_grad=True) as recorder, \
                torch.enable_grad():
            # The input carries the graph, so activations need grad even without trainable parameters.
            with self._autocast(x.device):
                logits = _logits(module(x.detach().requires_grad_(True)))
            logits[:n, self.target_index].float().sum().backward()
            acts = recorder.activations()
            try:
                grads = recorder.gradients()
            except RuntimeError as err:
                raise VtcavError(f"{err}; drop that layer from --layers") from None
        return BatchResult(_numpy(logits, n), {k: _numpy(v, n) for k, v in acts.items()},
                           {k: _numpy(v, n) for k, v in grads.items()})


def _logits(output) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _numpy(tensor: torch.Tensor, n: int) -> np.ndarray:
    return tensor[:n].detach().float().cpu().numpy()


# --------------------------------------------------------------------------- the whole run
def embed(loaded: LoadedModel, layers: list[str], input_sets: list[InputSet], out: str | Path, *,
          target: str | None = None, dtype: str = "float16", grad_dtype: str = "float32",
          batch_size: int = 8, seed: int = 0, inputs_name: str = "", tool: str = TOOL,
          compress: bool = False, precision: str = "auto", shard: dict | None = None) -> dict:
    """Compute and write the embeddings file; returns a small summary."""
    if dtype not in DTYPES or grad_dtype not in DTYPES:
        raise UsageError(f"--dtype/--grad-dtype must be one of {', '.join(DTYPES)}")
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if not layers:
        raise UsageError("give at least one layer with --layers (see --list-layers)")
    resolve_layers(loaded, layers)
    names = [s.name for s in input_sets]
    if len(set(names)) != len(names):
        raise UsageError(f"set names repeat: {', '.join(names)}")
    target_index = None if target is None else loaded.class_index(str(target))
    torch.manual_seed(seed)
    described = describe_layers(loaded)
    infos = {name: described[name] for name in layers}
    never = [name for name, info in infos.items() if info.shape is None]
    if never:
        raise VtcavError(f"layer(s) {', '.join(never)} never ran (or gave no tensor) in a forward pass; "
                         f"choose others (see --list-layers)")
    provenance = {"model": loaded.provenance, "layers": layers, "input": loaded.input_spec.to_dict(),
                  "target": None if target_index is None else loaded.class_names[target_index],
                  "target_index": target_index, "dtype": dtype,
                  "grad_dtype": grad_dtype if target_index is not None else None,
                  "inputs": inputs_name, "sets": names, "seed": seed}
    device = model_device(loaded.module)
    precision = resolve_precision(precision, device)
    provenance["precision"] = precision
    if shard is not None:  # the shard's identity (vtcav_common.shard); vt-merge drops it
        provenance["shard"] = shard
    layer_pass = LayerPass(loaded, layers, target_index, precision)
    total = 0
    with EmbeddingsWriter(out, tool, provenance, infos) as writer:
        for input_set in input_sets:
            sink = writer.add_set(input_set, len(loaded.class_names), DTYPES[dtype],
                                  DTYPES[grad_dtype] if target_index is not None else None, batch_size, compress)
            batches = cli.progress(input_set.batches(batch_size), total=-(-input_set.n // batch_size),
                                   description=f"{input_set.name}")
            for batch in batches:
                sink.write(batch, layer_pass(to_tensor(batch, loaded, device)))
            sink.close()
            total += input_set.n
            cli.info(f"{tool}: {input_set.name}: {input_set.n} clips")
    return {"sets": len(input_sets), "clips": total, "layers": len(layers), "target_index": target_index}
