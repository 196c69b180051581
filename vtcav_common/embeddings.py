"""Reading embeddings files (vt-embed's output): activations, gradients, provenance.

Layout (kind ``embeddings``; see docs/formats.md)::

    /sets/<name>/ids, logits, acts/<layer>, grads/<layer>     attrs: kind, role, n
    /layers/<layer>                                          attrs: shape, channel_axis

Arrays are returned flattened per sample (``N x D`` float32), which is what CAVs and
directional derivatives need.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from . import h5io
from .errors import IncompatibleError, VtcavError

# Provenance keys that must agree before activations/gradients/CAVs may be combined.
MODEL_KEYS = ("model", "input")


@dataclass(frozen=True)
class SetInfo:
    name: str
    role: str          # "concept", "random" or "inputs"
    kind: str
    n: int
    has_grads: bool


class Embeddings:
    """An open embeddings file. Use as a context manager."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.handle = h5io.open_file(path, "embeddings")
        self.provenance = h5io.provenance(self.handle)
        if "sets" not in self.handle:
            self.handle.close()
            raise VtcavError(f"{path}: embeddings file has no /sets group")

    def __enter__(self) -> "Embeddings":
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()

    @property
    def layers(self) -> list[str]:
        return list(self.provenance.get("layers", []))

    def sets(self) -> list[SetInfo]:
        infos = []
        for name, group in self.handle["sets"].items():
            role = str(group.attrs.get("role", "concept"))
            infos.append(SetInfo(name, role, str(group.attrs.get("kind", "")),
                                 int(group["ids"].shape[0]), "grads" in group))
        return infos

    def _dataset(self, set_name: str, what: str, layer: str) -> h5py.Dataset:
        sets = self.handle["sets"]
        if set_name not in sets:
            raise VtcavError(f"{self.path}: no set '{set_name}' (has {', '.join(sets.keys())})")
        group = sets[set_name]
        if what not in group or layer not in group[what]:
            raise VtcavError(f"{self.path}: set '{set_name}' has no {what} for layer '{layer}'")
        return group[what][layer]

    def flat(self, set_name: str, layer: str, what: str = "acts") -> np.ndarray:
        """``N x D`` float32 activations (or gradients) of one set at one layer."""
        return self.stack_flat([set_name], layer, what)[0]

    def stack_flat(self, set_names: list[str], layer: str, what: str = "acts") -> tuple[np.ndarray, list[int]]:
        """Several sets' rows in one ``M x D`` float32 array, read straight into place.

        Returns the array and each set's row count. float16 files are widened with
        torch, whose vectorised conversion is many times faster than numpy's.
        """
        import torch

        datasets = [self._dataset(name, what, layer) for name in set_names]
        counts = [int(ds.shape[0]) for ds in datasets]
        width = int(np.prod(datasets[0].shape[1:])) if datasets else 0
        rows = np.empty((sum(counts), width), np.float32)
        start = 0
        for ds, count in zip(datasets, counts):
            if count:
                target = rows[start:start + count]
                if ds.dtype == np.float32:
                    ds.read_direct(target.reshape(count, *ds.shape[1:]))
                else:
                    torch.from_numpy(target).copy_(torch.from_numpy(ds[()].reshape(count, -1)))
            start += count
        return rows, counts

    def iter_flat(self, set_name: str, layer: str, what: str = "grads",
                  batch: int = 256) -> Iterator[np.ndarray]:
        """The same, streamed in batches of rows (bounded memory for many inputs)."""
        data = self._dataset(set_name, what, layer)
        for start in range(0, data.shape[0], batch):
            block = data[start:start + batch]
            yield block.reshape(block.shape[0], -1).astype(np.float32, copy=False)

    def ids(self, set_name: str) -> list[str]:
        return h5io.read_strings(self.handle["sets"][set_name]["ids"])

    def feature_size(self, layer: str) -> int:
        shape = self.handle["layers"][layer].attrs["shape"] if "layers" in self.handle and \
            layer in self.handle["layers"] else None
        if shape is None:
            first = next(iter(self.handle["sets"].values()))
            shape = first["acts"][layer].shape[1:] if "acts" in first else first["grads"][layer].shape[1:]
        return int(np.prod(shape))


def model_identity(provenance: dict) -> dict:
    """The part of a provenance that says which model and input sampling produced a file."""
    model = provenance.get("model", {})
    return {"arch": model.get("arch"), "weights_sha256": model.get("weights_sha256"),
            "num_classes": model.get("num_classes"), "input": provenance.get("input")}


def require_same_model(name_a: str, prov_a: dict, name_b: str, prov_b: dict) -> None:
    """Refuse to combine files computed with different models or input sampling."""
    id_a, id_b = model_identity(prov_a), model_identity(prov_b)
    for key in ("arch", "weights_sha256", "num_classes", "input"):
        if id_a[key] != id_b[key]:
            what = {"arch": "model architecture", "weights_sha256": "model weights",
                    "num_classes": "number of classes", "input": "input sampling"}[key]
            raise IncompatibleError(
                f"{name_b}: computed with a different {what} than {name_a} "
                f"({_brief(id_b[key])} vs {_brief(id_a[key])}); refusing to combine")


def _brief(value) -> str:
    text = str(value)
    return text if len(text) <= 24 else text[:21] + "..."
