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
from .errors import UsageError, VtcavError
from .models.base import LayerRecorder, LoadedModel, preprocess, temporal_indices
from .models.layers import LayerInfo, describe_layers, model_device, resolve_layers
from .records import filter_manifest, read_manifest
from .video import probe, read_frames, read_video

TOOL = "vt-embed"
DTYPES = {"float16": np.float16, "float32": np.float32}
MANIFEST_SET = "inputs"
CHUNK_BYTES = 1 << 20      # aim for chunks of about 1 MiB (at least one sample)


def h5_name(layer: str) -> str:
    """A layer name as an HDF5 link name: ``%`` -> ``%25``, ``/`` -> ``%2F``."""
    return layer.replace("%", "%25").replace("/", "%2F")


def layer_from_h5(name: str) -> str:
    return name.replace("%2F", "/").replace("%25", "%")


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

    def batches(batch_size: int) -> Iterator[InputBatch]:
        with clipsets.open_clipset(path) as handle:
            group = handle[clipsets.ROOT][name]
            clips, video_ids = group["clips"], group["video_id"]
            for start in range(0, clips.shape[0], batch_size):
                stop = min(start + batch_size, clips.shape[0])
                ids = [v.decode() if isinstance(v, bytes) else str(v) for v in video_ids[start:stop]]
                yield InputBatch([f"{vid}#{i}" for i, vid in zip(range(start, stop), ids)], clips[start:stop])
    return batches


def manifest_inputs(path: str, frames: int, labels: list[str], split: str | None,
                    name: str = MANIFEST_SET) -> list[InputSet]:
    """The videos of a labels manifest (filtered by label and split) as one set."""
    videos = filter_manifest(read_manifest(path), labels, split, cli.display_name(path))

    def batches(batch_size: int) -> Iterator[InputBatch]:
        for start in range(0, len(videos), batch_size):
            chunk = videos[start:start + batch_size]
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


# --------------------------------------------------------------------------- writing
class SetSink:
    """Writes one set's rows batch by batch; it holds no data between writes."""

    def __init__(self, group: h5py.Group, input_set: InputSet, layers: dict[str, LayerInfo], num_classes: int,
                 dtype: np.dtype, grad_dtype: np.dtype | None, batch_size: int, compress: bool = False):
        n = input_set.n
        self.name, self.n, self.written = input_set.name, n, 0
        self.dtype, self.grad_dtype = dtype, grad_dtype
        self.ids = group.create_dataset("ids", shape=(n,), dtype=h5py.string_dtype(), track_times=False)
        self.labels = (group.create_dataset("labels", shape=(n,), dtype=h5py.string_dtype(), track_times=False)
                       if input_set.has_labels else None)
        self.logits = h5io.dataset(group, "logits", shape=(n, num_classes), dtype=np.float32,
                                   chunks=(max(1, min(n, 4096)), num_classes) if n else None)
        self.acts = {name: _array(group.require_group("acts"), name, n, info.shape, dtype, batch_size, compress)
                     for name, info in layers.items()}
        self.grads = None if grad_dtype is None else {
            name: _array(group.require_group("grads"), name, n, info.shape, grad_dtype, batch_size, compress)
            for name, info in layers.items()}

    def write(self, batch: InputBatch, result: BatchResult) -> None:
        start, stop = self.written, self.written + len(batch.ids)
        if stop > self.n:
            raise VtcavError(f"set '{self.name}' yielded more than its {self.n} clips")
        self.ids[start:stop] = np.array(batch.ids, dtype=object)
        if self.labels is not None:
            self.labels[start:stop] = np.array(batch.labels, dtype=object)
        self.logits[start:stop] = result.logits
        for name, dataset in self.acts.items():
            dataset[start:stop] = _cast(result.acts[name], self.dtype, name, "activations")
        if self.grads is not None:
            for name, dataset in self.grads.items():
                dataset[start:stop] = _cast(result.grads[name], self.grad_dtype, name, "gradients")
        self.written = stop

    def close(self) -> None:
        if self.written != self.n:
            raise VtcavError(f"set '{self.name}': wrote {self.written} of {self.n} clips")


def _array(group: h5py.Group, layer: str, n: int, shape: tuple[int, ...], dtype, batch_size: int,
           compress: bool = False) -> h5py.Dataset:
    """A dataset whose chunks never span two batches, so each chunk is written (and compressed) once.

    Uncompressed by default: activations are read back whole by vt-cav and vt-score, and
    gzip costs more time (writing and reading) than the model's forward pass on small models.
    """
    if n == 0:  # an empty set: nothing to chunk or compress
        dataset = h5io.dataset(group, h5_name(layer), shape=(0, *shape), dtype=dtype)
    else:
        row_bytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        rows = max(1, min(n, batch_size, CHUNK_BYTES // row_bytes))
        packing = dict(compression="gzip", compression_opts=1, shuffle=True) if compress else dict(compression=None)
        dataset = h5io.dataset(group, h5_name(layer), shape=(n, *shape), dtype=dtype, chunks=(rows, *shape),
                               **packing)
    dataset.attrs["name"] = layer
    return dataset


def _cast(values: np.ndarray, dtype, layer: str, what: str) -> np.ndarray:
    """Cast for storage; refuse silent overflow to inf (float16 tops out at 65504).

    The cast runs in torch: numpy's float32 -> float16 conversion is scalar and was the
    slowest part of writing activations.
    """
    if values.dtype == dtype:
        return values
    source = torch.from_numpy(np.ascontiguousarray(values))
    if dtype == np.float16:
        largest = float(source.abs().max()) if source.numel() else 0.0   # one reduction; nan propagates
        if largest > 65504 and largest != float("inf"):
            raise VtcavError(f"layer {layer}: {what} exceed the float16 range (max |x| = {largest:.4g}); "
                             f"use --dtype float32")
    return source.to(torch.float16 if dtype == np.float16 else torch.float32).numpy()


def write_layer_table(handle: h5py.File, layers: dict[str, LayerInfo]) -> None:
    table = handle.create_group("layers", track_order=True)
    for name, info in layers.items():
        group = table.create_group(h5_name(name))
        group.attrs["name"] = name
        group.attrs["shape"] = list(info.shape)
        group.attrs["channel_axis"] = -1 if info.channel_axis is None else int(info.channel_axis)
        group.attrs["channels_last"] = bool(info.channels_last)
        group.attrs["type"] = info.type
        group.attrs["calls"] = int(info.calls)


# --------------------------------------------------------------------------- the whole run
def embed(loaded: LoadedModel, layers: list[str], input_sets: list[InputSet], out: str | Path, *,
          target: str | None = None, dtype: str = "float16", grad_dtype: str = "float32",
          batch_size: int = 8, seed: int = 0, inputs_name: str = "", tool: str = TOOL,
          compress: bool = False, precision: str = "auto") -> dict:
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
    layer_pass = LayerPass(loaded, layers, target_index, precision)
    total = 0
    with h5io.create(out, "embeddings", tool, provenance) as handle:
        write_layer_table(handle, infos)
        sets_group = handle.create_group("sets", track_order=True)
        for input_set in input_sets:
            group = sets_group.create_group(input_set.name, track_order=True)
            group.attrs["kind"], group.attrs["role"], group.attrs["n"] = input_set.kind, input_set.role, input_set.n
            sink = SetSink(group, input_set, infos, len(loaded.class_names), DTYPES[dtype],
                           DTYPES[grad_dtype] if target_index is not None else None, batch_size, compress)
            batches = cli.progress(input_set.batches(batch_size), total=-(-input_set.n // batch_size),
                                   description=f"{input_set.name}")
            for batch in batches:
                sink.write(batch, layer_pass(to_tensor(batch, loaded, device)))
            sink.close()
            total += input_set.n
            cli.info(f"{tool}: {input_set.name}: {input_set.n} clips")
    return {"sets": len(input_sets), "clips": total, "layers": len(layers), "target_index": target_index}
