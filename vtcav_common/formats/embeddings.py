"""The embeddings file (kind ``embeddings``, vt-embed's output): writing it and reading it back.

Layout (schema 1; see docs/formats.md)::

    / attrs: vtcav_kind, schema_version, tool, tool_version, run_id, provenance (JSON):
             {"model": {...}, "layers": [...], "input": InputSpec, "target", "target_index",
              "dtype", "grad_dtype", "inputs": <file name>, "sets": [...], "seed"}
    /sets/<name>/          attrs: kind, role, n
        ids         str      N      "video_id#i" (clip i of a clip set) or the manifest's video_id
        labels      str      N      (manifest inputs only) each video's label
        logits      float32  N x K
        acts/<layer>    dtype        N x (layer's per-sample shape)
        grads/<layer>   grad_dtype   N x (same)        (only with a target)
    /layers/<layer>        attrs: name, shape, channel_axis, channels_last, type, calls

Layer names are HDF5 link names after :func:`h5_name` (``%`` -> ``%25``, ``/`` -> ``%2F``;
a ``/`` would make a nested group), on write and on read; the real name is kept in the
``name`` attribute and in the provenance's ``layers``.

Arrays are read back flattened per sample (``N x D`` float32), streamed in blocks of rows
(:meth:`Embeddings.iter_flat`) or of columns (:meth:`Embeddings.column_blocks`), so no
reader needs a whole ``N x D`` matrix at once.

Example:
    >>> import tempfile, numpy as np
    >>> from types import SimpleNamespace as NS
    >>> path = tempfile.mkdtemp() + "/e.h5"
    >>> layer = NS(shape=(2, 3), channel_axis=0, channels_last=False, type="Conv", calls=1)
    >>> with EmbeddingsWriter(path, "doctest", {"layers": ["a/b"]}, {"a/b": layer}) as writer:
    ...     sink = writer.add_set(NS(name="s", kind="k", role="concept", n=2, has_labels=False),
    ...                           num_classes=1, dtype=np.float32)
    ...     sink.write(NS(ids=["x", "y"], labels=None),
    ...                NS(logits=np.zeros((2, 1)), acts={"a/b": np.ones((2, 2, 3))}, grads=None))
    ...     sink.close()
    >>> with Embeddings(path) as emb:
    ...     emb.flat("s", "a/b").shape, emb.ids("s")
    ((2, 6), ['x', 'y'])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from ..core import h5io
from ..core.files import fail_hdf5_write
from ..core.errors import IncompatibleError, VtcavError

KIND = "embeddings"
# Provenance keys that must agree before activations/gradients/CAVs may be combined.
MODEL_KEYS = ("model", "input", "pool", "control")   # copied into the CAV file (vt-cav)
CHUNK_BYTES = 1 << 20      # aim for chunks of about 1 MiB (at least one sample)


def h5_name(layer: str) -> str:
    """A layer name as an HDF5 link name: ``%`` -> ``%25``, ``/`` -> ``%2F``."""
    return layer.replace("%", "%25").replace("/", "%2F")


def layer_from_h5(name: str) -> str:
    return name.replace("%2F", "/").replace("%25", "%")


# --------------------------------------------------------------------------- writing
class EmbeddingsWriter:
    """Creates an embeddings file atomically; :meth:`add_set` gives a sink per set.

    ``layers`` maps each layer name to an object with ``shape``, ``channel_axis``,
    ``channels_last``, ``type`` and ``calls`` (``models.layers.LayerInfo``).
    """

    def __init__(self, path: str | Path, tool: str, provenance: dict[str, Any], layers: dict[str, Any]):
        self.path, self.tool, self.provenance, self.layers = path, tool, provenance, layers
        self._context = None

    def __enter__(self) -> "EmbeddingsWriter":
        self._context = h5io.create(self.path, KIND, self.tool, self.provenance)
        self.handle = self._context.__enter__()
        write_layer_table(self.handle, self.layers)
        self.sets = self.handle.create_group("sets", track_order=True)
        return self

    def __exit__(self, *exc) -> bool | None:
        return self._context.__exit__(*exc)

    def add_set(self, input_set, num_classes: int, dtype, grad_dtype=None, batch_size: int = 8,
                compress: bool = False) -> "SetSink":
        """``input_set`` has ``name``, ``kind``, ``role``, ``n`` and ``has_labels``."""
        group = self.sets.create_group(input_set.name, track_order=True)
        group.attrs["kind"], group.attrs["role"], group.attrs["n"] = input_set.kind, input_set.role, input_set.n
        # The space this set takes (uncompressed, an upper bound) is claimed before any of it
        # is written: a full disk or ulimit -f is one error now, never a crash mid-write.
        row = sum(int(np.prod(info.shape)) for info in self.layers.values())
        self._reserved = getattr(self, "_reserved", 0) + input_set.n * (
            row * (np.dtype(dtype).itemsize + (np.dtype(grad_dtype).itemsize if grad_dtype is not None else 0))
            + 4 * num_classes + 256)
        h5io.reserve(self.handle, self._reserved, self.path)
        return SetSink(group, input_set, self.layers, num_classes, dtype, grad_dtype, batch_size, compress,
                       self.path)


class SetSink:
    """Writes one set's rows batch by batch; it holds no data between writes."""

    def __init__(self, group: h5py.Group, input_set, layers: dict[str, Any], num_classes: int,
                 dtype: np.dtype, grad_dtype: np.dtype | None, batch_size: int, compress: bool = False,
                 path: str | Path | None = None):
        n = input_set.n
        self.path = path
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

    def write(self, batch, result) -> None:
        """``batch`` has ``ids`` (and ``labels``); ``result`` has ``logits``, ``acts`` and ``grads``.

        Values are written as given (tests make files with NaN through this writer); a model's
        output is checked first by its caller (:func:`refuse_nonfinite`, vt-embed)."""
        try:
            self._write(batch, result)
        except (OSError, RuntimeError) as err:   # a write HDF5 could not do: never unwind through h5py
            raise fail_hdf5_write(self.path or self.name, err) from None

    def _write(self, batch, result) -> None:
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
        # Flushed here, so that a write the system refuses fails in this call (and ends the run
        # at once, fail_hdf5_write) rather than later, when h5py frees a dataset and HDF5 crashes.
        self.ids.file.flush()
        self.written = stop

    def close(self) -> None:
        if self.written != self.n:
            raise VtcavError(f"set '{self.name}': wrote {self.written} of {self.n} clips")


def refuse_nonfinite(name: str, ids, result, where: str = "") -> None:
    """Outputs are checked as inputs are: NaN or inf from the model (``--std 0``, an
    overflowing layer) is an error naming the clip, never a file the readers then refuse."""
    for what, arrays in (("logits", {"": result.logits}), ("activations", result.acts),
                         ("gradients", getattr(result, "grads", None) or {})):
        for layer, values in arrays.items():
            values = np.asarray(values)
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                bad = np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))
                at = f" of layer {layer}" if layer else ""
                raise VtcavError(f"{where + ': ' if where else ''}set '{name}', clip {ids[int(bad[0])]}: the model "
                                 f"gave non-finite {what}{at} (NaN or inf); check --mean/--std and the weights")


def _array(group: h5py.Group, layer: str, n: int, shape: tuple[int, ...], dtype, batch_size: int,
           compress: bool = False) -> h5py.Dataset:
    """A dataset whose chunks never span two batches, so each chunk is written (and compressed) once.

    Uncompressed by default: gzip costs more time (writing and reading) than the model's
    forward pass on small models, and readers stream column blocks best from raw chunks.
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

    The cast runs in torch (the writer's caller has it loaded): numpy's float32 -> float16
    conversion is scalar and was the slowest part of writing activations.
    """
    if values.dtype == dtype:
        return values
    import torch

    source = torch.from_numpy(np.ascontiguousarray(values))
    if dtype == np.float16:
        largest = float(source.abs().max()) if source.numel() else 0.0   # one reduction; nan propagates
        if largest > 65504 and largest != float("inf"):
            raise VtcavError(f"layer {layer}: {what} exceed the float16 range (max |x| = {largest:.4g}); "
                             f"use --dtype float32")
    return source.to(torch.float16 if dtype == np.float16 else torch.float32).numpy()


def write_layer_table(handle: h5py.File, layers: dict[str, Any]) -> None:
    table = handle.create_group("layers", track_order=True)
    for name, info in layers.items():
        group = table.create_group(h5_name(name))
        group.attrs["name"] = name
        group.attrs["shape"] = list(info.shape)
        group.attrs["channel_axis"] = -1 if info.channel_axis is None else int(info.channel_axis)
        group.attrs["channels_last"] = bool(info.channels_last)
        group.attrs["type"] = info.type
        group.attrs["calls"] = int(info.calls)


# --------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class EmbeddedSet:
    """One set of an embeddings file (clip sets have their own ``clipsets.SetInfo``)."""

    name: str
    role: str          # "concept", "random" or "inputs"
    kind: str
    n: int
    has_grads: bool


class Embeddings:
    """An open embeddings file. Use as a context manager."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.handle = h5io.open_file(path, KIND, group="sets")
        try:
            self.provenance = h5io.provenance(self.handle)
            layers = self.provenance.get("layers")
            if not isinstance(layers, list) or not layers or not all(isinstance(x, str) for x in layers):
                raise VtcavError(f"{path}: provenance names no layers (a list of names); damaged, or not vtcav's")
            self.run_id = h5io.run_id(self.handle)
        except BaseException:
            self.handle.close()
            raise

    def __enter__(self) -> "Embeddings":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.handle.close()

    @property
    def layers(self) -> list[str]:
        return list(self.provenance.get("layers", []))

    def sets(self) -> list[EmbeddedSet]:
        infos = []
        for name, group in self.handle["sets"].items():
            role = str(group.attrs.get("role", "concept"))
            infos.append(EmbeddedSet(name, role, str(group.attrs.get("kind", "")),
                                     int(group["ids"].shape[0]), "grads" in group))
        return infos

    def dataset(self, set_name: str, layer: str, what: str = "acts") -> h5py.Dataset:
        sets = self.handle["sets"]
        if set_name not in sets:
            raise VtcavError(f"{self.path}: no set '{set_name}' (has {', '.join(sets.keys())})")
        group = sets[set_name]
        if what not in group or h5_name(layer) not in group[what]:
            raise VtcavError(f"{self.path}: set '{set_name}' has no {what} for layer '{layer}'")
        return group[what][h5_name(layer)]

    def uncached_dataset(self, set_name: str, layer: str, what: str = "acts") -> h5py.Dataset:
        """The same dataset opened without a chunk cache: a column block then reads only its own
        bytes of each raw chunk, instead of whole chunks evicted again before the next block."""
        self.dataset(set_name, layer, what)   # the checks and their messages
        access = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
        access.set_chunk_cache(0, 0, 1.0)
        group = self.handle["sets"][set_name][what]
        return h5py.Dataset(h5py.h5d.open(group.id, h5_name(layer).encode(), dapl=access))

    def flat(self, set_name: str, layer: str, what: str = "acts") -> np.ndarray:
        """``N x D`` float32 activations (or gradients) of one set at one layer (small sets only)."""
        blocks = list(self.iter_flat(set_name, layer, what, batch=1 << 30))
        return blocks[0] if blocks else np.zeros((0, self.feature_size(layer)), np.float32)

    def iter_flat(self, set_name: str, layer: str, what: str = "grads",
                  batch: int = 256) -> Iterator[np.ndarray]:
        """``batch`` rows at a time as ``n x D`` float32 (bounded memory for many inputs)."""
        data = self.dataset(set_name, layer, what)
        for start in range(0, data.shape[0], batch):
            yield to_float32(data[start:start + batch])

    def column_blocks(self, set_name: str, layer: str, columns: int, what: str = "acts"
                      ) -> Iterator[tuple[int, np.ndarray]]:
        """Every row, ``columns`` features (at most, at least one innermost row) at a time.

        Yields ``(first feature, N x d float32)`` in feature order; the blocks are
        hyperslabs of the stored array, so they cost one read of their own bytes.
        """
        data = self.uncached_dataset(set_name, layer, what)
        for first, index in column_slabs(data.shape[1:], columns):
            yield first, to_float32(data[(slice(None), *index)])

    def ids(self, set_name: str) -> list[str]:
        return h5io.read_strings(self.handle["sets"][set_name]["ids"])

    def feature_size(self, layer: str) -> int:
        return int(np.prod(self.layer_shape(layer)))

    def layer_shape(self, layer: str) -> tuple[int, ...]:
        table = self.handle.get("layers")
        if table is not None and h5_name(layer) in table:
            return tuple(int(x) for x in table[h5_name(layer)].attrs["shape"])
        first = next(iter(self.handle["sets"].values()))
        what = "acts" if "acts" in first else "grads"
        if h5_name(layer) not in first.get(what, {}):
            raise VtcavError(f"{self.path}: no layer '{layer}'")
        return tuple(first[what][h5_name(layer)].shape[1:])


def to_float32(block: np.ndarray) -> np.ndarray:
    """Rows flattened to ``n x D`` float32 (float16 widened once, in place of a copy)."""
    return block.reshape(block.shape[0], int(np.prod(block.shape[1:]))).astype(np.float32, copy=False)


def column_slabs(shape: tuple[int, ...], columns: int) -> Iterator[tuple[int, tuple]]:
    """Split a per-sample ``shape`` into hyperslabs of at most ``columns`` flattened features.

    Each slab is contiguous in flattened (C) order: a range along one axis with every
    earlier axis fixed. Yields ``(first flattened feature, index tuple)``.
    """
    shape = tuple(int(s) for s in shape)
    if not shape:
        yield 0, ()
        return
    inner = [int(np.prod(shape[axis + 1:])) for axis in range(len(shape))]
    # The outermost axis whose single index fits in the budget; ranges along it.
    axis = next((a for a in range(len(shape)) if inner[a] <= columns), len(shape) - 1)
    step = max(1, columns // inner[axis])
    for outer in np.ndindex(*shape[:axis]):
        base = int(sum(i * inner[a] for a, i in enumerate(outer)))
        for start in range(0, shape[axis], step):
            stop = min(start + step, shape[axis])
            yield base + start * inner[axis], (*outer, slice(start, stop))


def model_identity(provenance: dict) -> dict:
    """The part of a provenance that says which model and input sampling produced a file."""
    model = provenance.get("model", {})
    return {"arch": model.get("arch"), "weights_sha256": model.get("weights_sha256"),
            "num_classes": model.get("num_classes"), "input": provenance.get("input"),
            "pool": provenance.get("pool") or "none",     # vt-embed --pool: pooled and unpooled never mix
            "control": model_key(provenance) or "none"}             # vt-embed --control reinit/cascade: another model


def require_same_model(name_a: str, prov_a: dict, name_b: str, prov_b: dict) -> None:
    """Refuse to combine files computed with different models or input sampling."""
    id_a, id_b = model_identity(prov_a), model_identity(prov_b)
    for key in ("arch", "weights_sha256", "num_classes", "input", "pool", "control"):
        if id_a[key] != id_b[key]:
            what = {"arch": "model architecture", "weights_sha256": "model weights",
                    "num_classes": "number of classes", "input": "input sampling",
                    "pool": "pooling (vt-embed --pool)",
                    "control": "model randomisation (vt-embed --control, seed)"}[key]
            raise IncompatibleError(
                f"{name_b}: computed with a different {what} than {name_a} "
                f"({_brief(id_b[key])} vs {_brief(id_a[key])}); refusing to combine")


def _brief(value) -> str:
    text = str(value)
    return text if len(text) <= 24 else text[:21] + "..."


def model_key(provenance: dict) -> str | None:
    """What of a file's ``control`` changes the model (name and seed; vt-embed --control reinit or
    cascade:LAYER), None for the trained model or a control of the gradients only."""
    control = provenance.get("control")
    if not isinstance(control, dict) or control.get("kind") not in ("reinit", "cascade"):
        return None
    return f"{control['name']} seed {control.get('seed')}"
