"""vt-embed --pool: pooling P applied to activations and gradients alike is exact for TCAV.

A CAV v fitted on pooled activations is the direction Pᵀv in the full space, and
∇·Pᵀv = (P∇)·v: the directional derivatives (and so the TCAV scores) from pooled files
equal those along Pᵀv from unpooled ones. Checked on the tiny model's real activations
and gradients, through vt-embed, the CAV library and the score library.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import run_cmd
from vtcav_common.formats import clips as clipsets
from vtcav_common.core.errors import IncompatibleError
from vtcav_common.embed.pooling import parse_pool, pool
from vtcav_common.tcav import FitOptions, ScoreOptions, fit_cavs, score_cavs

TINY = "vtcav_common.models.tiny:motion_c3d"
LAYERS = ("block2", "block3")          # C x T x H x W: 32 x 8 x 16 x 16 and 48 x 8 x 16 x 16


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_tiny_weights) -> dict:
    """Tiny weights, a clip file (a concept and two random sets), and the unpooled embeddings."""
    folder = tmp_path_factory.mktemp("pool")
    weights = make_tiny_weights(5)
    clips = folder / "clips.h5"
    rng = np.random.default_rng(7)
    with clipsets.ClipSetWriter(clips, clipsets.Sampling(frames=8, size=(40, 40)), "test", {"seed": 7}) as writer:
        for name, role in (("ball", "concept"), ("random_00", "random"), ("random_01", "random")):
            appender = writer.add_set(name, kind="spatiotemporal" if role == "concept" else "random", role=role)
            base = rng.integers(0, 256, (6, 8, 40, 40, 3), dtype=np.uint8)
            if role == "concept":  # a bright square moving right: something the CAV can find
                for t in range(8):
                    base[:, t, 15:25, 4 * t:4 * t + 10] = 255
            appender.append(base, [f"{name}{i}" for i in range(6)], np.tile(np.arange(8), (6, 1)), [-1] * 6,
                            np.zeros((6, 8, 4)))
    full = folder / "full.h5"
    _embed(clips, weights, full)
    return {"folder": folder, "weights": weights, "clips": clips, "full": full}


def _embed(clips: Path, weights: Path, out: Path, *extra: str) -> None:
    r = run_cmd("vt-embed", clips, "--model", TINY, "--weights", weights, "--layers", ",".join(LAYERS),
                "--target", "right", "--dtype", "float32", "--batch-size", "4", "-o", out, "-q",
                *extra)
    assert r.returncode == 0, r.stderr


def _arrays(path: Path, what: str, layer: str, set_name: str = "ball") -> np.ndarray:
    with h5py.File(path) as handle:
        return handle[f"sets/{set_name}/{what}/{layer}"][()]


def _full_directions(vectors: np.ndarray, full_shape: tuple[int, ...], spec: str) -> np.ndarray:
    """Pᵀv for each row v, by autograd of the linear map a -> P(a)·v (float64)."""
    a = torch.zeros((len(vectors), *full_shape), dtype=torch.float64, requires_grad=True)
    pooled = pool(a, 0, parse_pool(spec))
    (pooled.reshape(len(vectors), -1) * torch.from_numpy(vectors).double()).sum().backward()
    return a.grad.reshape(len(vectors), -1).numpy()


@pytest.mark.parametrize("spec", ["2x4x4", "time", "space", "1x1x1"])
def test_pooled_scores_equal_full_space_scores_along_the_pulled_back_cav(world, spec):
    pooled = world["folder"] / f"pooled_{spec}.h5"
    _embed(world["clips"], world["weights"], pooled, "--pool", spec)
    with h5py.File(pooled) as handle:
        provenance = json.loads(handle.attrs["provenance"])
        assert provenance["pool"] == spec
        assert provenance["unpooled_shapes"]["block3"] == [48, 8, 16, 16]
        shape = tuple(handle["layers/block3"].attrs["shape"])
    expected = {"2x4x4": (48, 2, 4, 4), "time": (48, 1, 16, 16), "space": (48, 8, 1, 1), "1x1x1": (48, 1, 1, 1)}
    assert shape == expected[spec]

    # The same P on activations and gradients: the stored arrays are P of the full ones.
    for layer in LAYERS:
        for what in ("acts", "grads"):
            full = torch.from_numpy(_arrays(world["full"], what, layer))
            np.testing.assert_allclose(_arrays(pooled, what, layer), pool(full, 0, parse_pool(spec)).numpy(),
                                       rtol=1e-6, atol=1e-7)

    cavs = world["folder"] / f"cavs_{spec}.h5"
    fit_cavs([pooled], cavs, options=FitOptions(seed=0, device="cpu"))
    records = score_cavs(cavs, pooled, ScoreOptions(set_name="ball"))
    from vtcav_common.formats.cavs import read_cavs

    _, layers = read_cavs(cavs)
    checked = 0
    for layer_cavs in layers:
        grads_full = _arrays(world["full"], "grads", layer_cavs.layer).reshape(6, -1).astype(np.float64)
        grads_pooled = _arrays(pooled, "grads", layer_cavs.layer).reshape(6, -1).astype(np.float64)
        full_shape = _arrays(world["full"], "grads", layer_cavs.layer).shape[1:]
        directions = _full_directions(layer_cavs.vectors.astype(np.float64), full_shape, spec)
        along_full = grads_full @ directions.T                  # ∇ · Pᵀv
        along_pooled = grads_pooled @ layer_cavs.vectors.T.astype(np.float64)   # (P∇) · v
        scale = np.abs(along_full).max()
        np.testing.assert_allclose(along_pooled, along_full, rtol=1e-5, atol=1e-5 * scale)
        mine = [r for r in records if r.layer == layer_cavs.layer]
        assert len(mine) == len(layer_cavs.table) > 0
        for column, record in enumerate(mine):
            assert record.score == pytest.approx(float((along_full[:, column] > 0).mean()), abs=1e-6)
            assert record.magnitude == pytest.approx(float(along_full[:, column].mean()), rel=1e-4,
                                                     abs=1e-5 * scale)
            checked += 1
    assert checked >= 2 * 3    # two layers, each with ball vs 2 random sets and the null


def test_pooled_and_unpooled_files_are_refused_together(world):
    pooled = world["folder"] / "pooled_refusal.h5"
    _embed(world["clips"], world["weights"], pooled, "--pool", "2x4x4")
    cavs = world["folder"] / "cavs_pooled.h5"
    fit_cavs([pooled], cavs, options=FitOptions(seed=0, device="cpu"))
    with pytest.raises(IncompatibleError, match=r"pooling \(vt-embed --pool\).*2x4x4"):
        score_cavs(cavs, world["full"], ScoreOptions(set_name="ball"))
    with pytest.raises(IncompatibleError, match="pooling"):
        fit_cavs([world["full"], pooled], world["folder"] / "mixed.h5", options=FitOptions(seed=0, device="cpu"))


@pytest.mark.parametrize("spec, message", [("2x4", "--pool takes TxHxW"), ("0x1x1", "--pool takes TxHxW"),
                                           ("sideways", "--pool takes TxHxW")])
def test_bad_pool_specs_are_usage_errors(world, spec, message):
    r = run_cmd("vt-embed", world["clips"], "--model", TINY, "--weights", world["weights"], "--layers", "block3",
                "--pool", spec, "-o", world["folder"] / "never.h5")
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_layer_without_a_grid_is_refused(world):
    r = run_cmd("vt-embed", world["clips"], "--model", TINY, "--weights", world["weights"], "--layers",
                "block3,head", "--pool", "time", "-o", world["folder"] / "never.h5")
    assert r.returncode == 2 and "layer head gives 4 per clip" in r.stderr
    assert not (world["folder"] / "never.h5").exists()


def test_channels_last_layers_pool_their_grid():
    """T x H x W x C (Swin's stages) pools the same grid as C x T x H x W, channels untouched."""
    x = torch.randn(2, 6, 8, 10, 5)                      # N x T x H x W x C
    pooled = pool(x, 3, parse_pool("3x2x5"))
    reference = F.adaptive_avg_pool3d(x.permute(0, 4, 1, 2, 3), (3, 2, 5)).permute(0, 2, 3, 4, 1)
    assert pooled.shape == (2, 3, 2, 5, 5)
    torch.testing.assert_close(pooled, reference)
    assert pool(x, 3, parse_pool("16x16x16")) is x     # a grid already smaller is kept as it is
