"""Activations streamed from HDF5: the Gram matrix block by block, the back-projection in blocks.

Nothing of size (clips x features) is held: a layer's rows are read as column blocks
(every clip, a slab of features), so memory is the ``M x M`` Gram matrix plus one block,
whatever ``M``; the block is sized to ``--max-memory``.

The products run on a :class:`Linalg` backend: numpy on the CPU, torch on a CUDA device.
On the CPU numpy is the default although torch's BLAS is faster: on the demo's job (490
clips, 3 layers, 2-core machine) torch took 18.8 CPU seconds against numpy's 22.9, but
importing it costs seconds of start-up and 660 MB more peak memory (1231 vs 569 MB), which
would break the flat-memory promise; ``VTCAV_CPU_BLAS=torch`` selects it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Container, Iterator

import numpy as np

from ..formats.embeddings import Embeddings, column_slabs
from ..core.errors import UsageError, VtcavError

MB = 1 << 20
WORKING_BYTES = 256 * MB       # the Gram matrix's share plus the column block, while the Gram is small
MIN_BLOCK_BYTES = 32 * MB      # the block never shrinks below this (unless --max-memory says so)
KEEP_BYTES = 256 * MB          # blocks kept between the Gram pass and the back-projection
BASE_BYTES = 200 * MB          # the interpreter, numpy, h5py and scikit-learn
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class Part:
    emb: Embeddings
    name: str
    n: int


class LayerRows:
    """Several sets' activations at one layer, as one virtual ``M x D`` matrix read in blocks."""

    def __init__(self, parts: list[Part], layer: str):
        self.parts, self.layer = parts, layer
        shapes = {p.emb.path: p.emb.layer_shape(layer) for p in parts}
        if len(set(shapes.values())) > 1:
            (path_a, a), (path_b, b) = list(shapes.items())[:2]
            raise VtcavError(f"{path_b}: layer '{layer}' has shape {b}, {path_a} has {a}")
        self.shape = next(iter(shapes.values()))
        self.width = int(np.prod(self.shape))
        self.counts = [p.n for p in parts]
        self.m = sum(self.counts)

    def column_blocks(self, columns: int, skip: Container[int] = ()) -> Iterator[tuple[int, np.ndarray]]:
        """``(first feature, M x d float32)`` for consecutive slabs of at most ``columns`` features
        (those whose first feature is in ``skip`` are not read).

        The sets' pieces are read and widened to float32 on a few threads: numpy's float16
        conversion runs on one core at about 3 ns a value and releases the GIL, and it was
        the largest part of vt-cav's time (HDF5 reads still take turns).
        """
        datasets = [part.emb.uncached_dataset(part.name, self.layer) for part in self.parts]
        offsets = np.cumsum([0] + self.counts)
        buffer = np.empty(self.m * min(columns, self.width) if self.m else 0, np.float32)
        with ThreadPoolExecutor(max_workers=worker_threads()) as pool:
            for first, index in column_slabs(self.shape, columns):
                if first in skip:
                    continue
                d = _slab_width(self.shape, index)
                if buffer.size < self.m * d:                 # a slab wider than asked (one innermost row)
                    buffer = np.empty(self.m * d, np.float32)
                block = buffer[:self.m * d].reshape(self.m, d)

                def fill(i: int, index=index, block=block, d=d) -> None:
                    piece = datasets[i][(slice(None), *index)]
                    block[offsets[i]:offsets[i + 1]] = piece.reshape(piece.shape[0], d)

                list(pool.map(fill, range(len(self.parts))))
                yield first, block

    def where(self, row: int) -> tuple[Part, int]:
        """The set and its row number of a global row."""
        for part in self.parts:
            if row < part.n:
                return part, row
            row -= part.n
        raise IndexError(row)


def _slab_width(shape: tuple[int, ...], index: tuple) -> int:
    """Flattened features of one hyperslab of :func:`column_slabs`."""
    if not index:
        return 1
    span = index[-1].stop - index[-1].start
    return int(span * np.prod(shape[len(index):]))


def worker_threads() -> int:
    """Threads for work that releases the GIL: the cores this process may use, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:                                   # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


# --------------------------------------------------------------------------- the products
class Linalg:
    """``B B^T`` (accumulated in float64) and ``W^T B`` on numpy or a torch device."""

    def __init__(self, name: str):
        self.name = name                      # "numpy", "cpu" (torch) or "cuda" (torch)
        if name != "numpy":
            import torch

            self.torch, self.device = torch, torch.device(name)

    def gram_add(self, gram: np.ndarray, block: np.ndarray) -> None:
        if self.name == "numpy":
            gram += block @ block.T           # float32 product, widened as it is added
            return
        x = self.torch.from_numpy(block).to(self.device)
        gram += (x @ x.T).cpu().numpy()

    def project(self, mix: np.ndarray, block: np.ndarray) -> np.ndarray:
        """``mix^T block``: ``k x d`` float32."""
        if self.name == "numpy":
            return mix.T @ block
        t = self.torch
        return (t.from_numpy(np.ascontiguousarray(mix.T)).to(self.device)
                @ t.from_numpy(block).to(self.device)).cpu().numpy()


def choose_linalg(device: str) -> Linalg:
    """``auto``: CUDA when there is a GPU, else the CPU (numpy)."""
    if device not in DEVICES:
        raise UsageError(f"--device must be one of {', '.join(DEVICES)}, got '{device}'")
    if device in ("auto", "cuda"):
        if _cuda_available():
            return Linalg("cuda")
        if device == "cuda":
            raise UsageError("--device cuda: no CUDA device is available")
    if os.environ.get("VTCAV_CPU_BLAS") == "torch" and _torch_installed():
        return Linalg("cpu")
    return Linalg("numpy")


def _cuda_available() -> bool:
    # Look for the driver before importing torch: most CPU machines then never import it.
    if not (os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")):
        return False
    if not _torch_installed():
        return False
    import torch

    return bool(torch.cuda.is_available())


def _torch_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


# --------------------------------------------------------------------------- memory
def available_memory() -> int:
    """MemAvailable (bytes) where the kernel says, else 8 GiB."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


@dataclass(frozen=True)
class Budget:
    columns: int       # features per streamed column block
    keep_bytes: int    # float32 blocks of the Gram pass kept in memory for the back-projection


def memory_budget(m: int, width: int, cavs: int, max_memory: int, where: str) -> Budget:
    """Columns per block for ``m`` clips, so that the run fits ``max_memory``; refuse up front if not.

    Fixed: the interpreter, the layer's CAVs (``k x D`` float32), the Gram matrix and what
    its eigendecomposition needs (about five ``M x M`` float64). Per column: the float32
    block and the float16 piece read into it. The block takes what the Gram matrix leaves
    of a fixed working budget, so peak memory stays flat as ``M`` grows. Up to
    ``KEEP_BYTES`` more, less the Gram matrix (and within what the limit leaves), keeps the
    first blocks of the Gram pass for the back-projection, which then reads and widens only
    the rest again.
    """
    gram = 5 * 8 * m * m
    fixed = BASE_BYTES + 4 * cavs * width + gram
    per_column = 6 * m
    left = max_memory - fixed
    if left < per_column:
        raise VtcavError(
            f"{where}: needs at least {(fixed + per_column) / MB:.0f} MB ({m} x {m} Gram matrix of {m} clips, "
            f"{cavs} CAVs x {width} features, one block) but --max-memory is {max_memory / MB:.0f} MB; "
            f"use fewer clips, pooled activations (vt-embed --pool) or more memory")
    budget = min(left, max(WORKING_BYTES - gram, MIN_BLOCK_BYTES))
    columns = int(max(1, budget // per_column))
    # The kept blocks share their budget with the Gram matrix too: at 2,500 clips the Gram
    # matrix alone is 250 MB, and keeping 256 MB more made the peak 1.33x the 250-clip one.
    return Budget(columns, int(max(0, min(KEEP_BYTES - gram, left - columns * per_column))))
