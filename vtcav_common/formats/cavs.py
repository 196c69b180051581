"""The CAV file (kind ``cavs``, vt-cav's output): writing it and reading it back.

Layout (schema 1)::

    / attrs: run_id, provenance = {"model", "input", "layers", "classifier", "seed", "sources",
                                   "source_runs", ...}
    /layers/<layer>/vectors    k x D float32, unit norm, pointing toward ``concept``
    /layers/<layer>/concept    str k      the positive set
    /layers/<layer>/against    str k      the negative set (a random set, or concept B)
    /layers/<layer>/kind       str k      "concept" | "null" | "relative"
    /layers/<layer>/replicate  int k      which random set / resample
    /layers/<layer>/accuracy   float k    held-out accuracy of the linear classifier
    /layers/<layer>/n_train, n_test  int k
    /layers/<layer>/fastcav_cosine, fastcav_accuracy  float k   (with --agreement)

Layer groups are named with :func:`~vtcav_common.formats.embeddings.h5_name` (the real name in the
group's ``name`` attribute), like the embeddings file.

Example:
    >>> import tempfile, numpy as np
    >>> path = tempfile.mkdtemp() + "/c.h5"
    >>> with CAVWriter(path, "doctest", {"layers": ["x/y"]}) as writer:
    ...     writer.write_layer("x/y", ["c"], ["r"], ["concept"], [0],
    ...                        {"vectors": np.eye(1, 4, dtype=np.float32), "accuracy": np.ones(1, np.float32)})
    >>> with CAVFile(path) as cavs:
    ...     layer = cavs.read_layer("x/y")
    >>> layer.vectors.shape, layer.table[0]["concept"], layer.table[0]["accuracy"]
    ((1, 4), 'c', 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core import h5io
from .embeddings import h5_name
from ..core.errors import VtcavError

KIND = "cavs"


class CAVWriter:
    """Creates a CAV file atomically; one :meth:`write_layer` per layer."""

    def __init__(self, path: str | Path, tool: str, provenance: dict):
        self.path, self.tool, self.provenance = path, tool, provenance

    def __enter__(self) -> "CAVWriter":
        self._context = h5io.create(self.path, KIND, self.tool, self.provenance)
        self.handle = self._context.__enter__()
        return self

    def __exit__(self, *exc):
        return self._context.__exit__(*exc)

    def write_layer(self, layer: str, concept: list[str], against: list[str], kind: list[str],
                    replicate: list[int], fitted: dict[str, np.ndarray]) -> None:
        group = self.handle.require_group("layers").create_group(h5_name(layer))
        group.attrs["name"] = layer
        vectors = fitted["vectors"]
        # Unit vectors of floats do not compress: gzip only cost time here.
        h5io.dataset(group, "vectors", vectors, chunks=(1, vectors.shape[1]) if vectors.size else None,
                     compression=None)
        h5io.string_dataset(group, "concept", concept)
        h5io.string_dataset(group, "against", against)
        h5io.string_dataset(group, "kind", kind)
        h5io.dataset(group, "replicate", np.asarray(replicate, np.int32))
        for name, values in fitted.items():
            if name != "vectors":
                h5io.dataset(group, name, values)


@dataclass
class LayerCAVs:
    layer: str
    vectors: np.ndarray
    table: list[dict]   # one row per CAV: concept, against, kind, replicate, accuracy, ...


class CAVFile:
    """An open CAV file; layers are read one at a time (``k x D`` each)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.handle = h5io.open_file(path, KIND, group="layers")
        self.provenance = h5io.provenance(self.handle)
        self.run_id = h5io.run_id(self.handle)
        self.groups = {str(g.attrs.get("name", key)): g for key, g in self.handle["layers"].items()}

    def __enter__(self) -> "CAVFile":
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()

    @property
    def layers(self) -> list[str]:
        return list(self.groups)

    def read_layer(self, layer: str) -> LayerCAVs:
        group = self.groups[layer]
        columns = {name: (h5io.read_strings(group[name]) if group[name].dtype.kind in "OS"
                          else group[name][()].tolist())
                   for name in group if name != "vectors"}
        vectors = group["vectors"][()]
        if not np.isfinite(vectors).all():
            row = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
            raise VtcavError(f"{self.path}: non-finite CAV at layer '{layer}', row {row}")
        table = [{name: values[i] for name, values in columns.items()} for i in range(vectors.shape[0])]
        return LayerCAVs(layer, vectors, table)


def read_cavs(path: str | Path) -> tuple[dict, list[LayerCAVs]]:
    """Provenance and every layer's CAVs (all in memory; :class:`CAVFile` reads a layer at a time)."""
    with CAVFile(path) as cavs:
        return cavs.provenance, [cavs.read_layer(layer) for layer in cavs.layers]
