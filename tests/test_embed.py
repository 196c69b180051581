"""vt-embed: one forward (and one backward) per batch, exact activations and gradients,
streamed batch by batch, with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import run_cli, run_cmd
from vtcav_common.core import h5io
from vtcav_common import embed as embed_module
from vtcav_common.embed import BatchResult, InputBatch, InputSet, _cast, embed, h5_name
from vtcav_common.core.errors import VtcavError
from vtcav_common.models import load_model
from vtcav_common.models.base import preprocess
from vtcav_common.models.tiny import motion_c3d

TINY = "vtcav_common.models.tiny:motion_c3d"
TESTS = Path(__file__).resolve().parent


pytestmark = pytest.mark.usefixtures("one_thread")


def _reference(weights: Path, clips: np.ndarray, k: int):
    """Plain forward through the blocks, and autograd of logit k w.r.t. block2 and block3."""
    model = motion_c3d().eval()
    model.load_state_dict(torch.load(weights, weights_only=True))
    x = preprocess(clips, model.vtcav_input_spec)
    h1 = model.block1(x)
    h2 = model.block2(h1)
    h3 = model.block3(h2)
    logits = model.head(model.pool(model.block4(h3)).flatten(1))
    g2, g3 = torch.autograd.grad(logits[:, k].sum(), [h2, h3])
    return logits.detach(), {"block2": h2.detach(), "block3": h3.detach()}, {"block2": g2, "block3": g3}


def test_activations_and_gradients_are_exact(tiny_weights, clips_file, tmp_path):
    out = tmp_path / "acts.h5"
    run_cmd("vt-embed", clips_file, "--model", TINY, "--weights", tiny_weights, "--layers", "block2,block3",
            "--target", "right", "--dtype", "float32", "--batch-size", "2", "-o", out, "-q", check=True)
    with h5py.File(clips_file) as handle:
        clips = handle["concepts/ball_right/clips"][()]
    logits, acts, grads = _reference(tiny_weights, clips, k=1)
    with h5py.File(out) as handle:
        group = handle["sets/ball_right"]
        np.testing.assert_allclose(group["logits"][()], logits.numpy(), rtol=1e-4, atol=1e-5)
        for layer in ("block2", "block3"):
            assert group["acts"][layer].dtype == np.float32
            np.testing.assert_allclose(group["acts"][layer][()], acts[layer].numpy(), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(group["grads"][layer][()], grads[layer].numpy(), rtol=1e-4, atol=1e-7)
            assert np.abs(group["grads"][layer][()]).max() > 0
        provenance = json.loads(handle.attrs["provenance"])
        assert provenance["target"] == "right" and provenance["target_index"] == 1
        assert provenance["layers"] == ["block2", "block3"] and provenance["dtype"] == "float32"
        assert provenance["inputs"] == "clips.h5" and provenance["sets"] == ["ball_right", "random_0"]
        assert provenance["input"] == provenance["model"]["input"]
        assert handle["sets/random_0"].attrs["role"] == "random" and handle["sets/random_0"].attrs["n"] == 3
        assert handle["sets/ball_right"].attrs["kind"] == "spatiotemporal"
        assert handle["layers/block3"].attrs["channel_axis"] == 0
        assert list(handle["layers/block3"].attrs["shape"]) == [48, 8, 16, 16]


def test_float16_storage_and_no_gradients_without_target(tiny_weights, clips_file, tmp_path):
    out = tmp_path / "acts16.h5"
    r = run_cmd("vt-embed", clips_file, "--set", "random_0", "--model", TINY, "--weights", tiny_weights,
                "--layers", "block1", "-o", out, "-q")
    assert r.returncode == 0, r.stderr
    with h5py.File(out) as handle:
        group = handle["sets/random_0"]
        assert list(handle["sets"]) == ["random_0"]
        assert group["acts/block1"].dtype == np.float16 and "grads" not in group
        assert json.loads(handle.attrs["provenance"])["target"] is None
    out = tmp_path / "grads16.h5"
    r = run_cmd("vt-embed", clips_file, "--set", "random_0", "--model", TINY, "--weights", tiny_weights,
                "--layers", "block1", "--target", "0", "--grad-dtype", "float16", "-o", out, "-q")
    assert r.returncode == 0, r.stderr
    with h5py.File(out) as handle:
        assert handle["sets/random_0/grads/block1"].dtype == np.float16


def test_same_inputs_same_bytes(tiny_weights, clips_file, tmp_path):
    outs = [tmp_path / "a.h5", tmp_path / "b.h5"]
    for out in outs:
        r = run_cmd("vt-embed", clips_file, "--model", TINY, "--weights", tiny_weights, "--layers", "block3",
                    "--target", "up", "--batch-size", "2", "--seed", "5", "-o", out, "-q")
        assert r.returncode == 0, r.stderr
    assert outs[0].read_bytes() == outs[1].read_bytes()


@pytest.mark.parametrize("args, code, message", [
    (["--dtype", "float64"], 2, "--dtype and --grad-dtype take float16 or float32"),
    (["--layers", "block3,blok2"], 2, "unknown layer(s) blok2 (did you mean block2"),
    (["--target", "sideways"], 2, "unknown class 'sideways'"),
    (["--set", "nope"], 2, "no clip set 'nope'"),
    (["--label", "right"], 2, "--label/--split filter a labels manifest"),
    (["--mean", "0.5,0.5"], 2, "--mean takes three comma-separated numbers"),
])
def test_usage_errors(tiny_weights, clips_file, tmp_path, args, code, message):
    out = tmp_path / "never.h5"
    base = ["--layers", "block3"] if "--layers" not in args else []
    r = run_cmd("vt-embed", clips_file, "--model", TINY, "--weights", tiny_weights, *base, *args, "-o", out)
    assert r.returncode == code, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".never.h5*"))


def test_errors_from_the_installed_command(tiny_weights, clips_file, tmp_path):
    """The console script gives the same one-line message and exit status, no traceback."""
    result = run_cli("vt-embed", clips_file, "--model", TINY, "--weights", tiny_weights, "--layers", "blok3",
                     "-o", tmp_path / "x.h5")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("vt-embed: error: unknown layer(s) blok3")


def test_manifest_inputs_with_filters(tiny_weights, tiny_world, tmp_path):
    out = tmp_path / "videos.h5"
    run_cmd("vt-embed", tiny_world / "labels.jsonl", "--label", "right", "--label", "left", "--split", "test",
            "--model", TINY, "--weights", tiny_weights, "--layers", "block3", "--target", "right",
            "--name", "test_lr", "-o", out, "-q", check=True)
    with h5py.File(out) as handle:
        group = handle["sets/test_lr"]
        ids = [v.decode() for v in group["ids"][()]]
        labels = [v.decode() for v in group["labels"][()]]
        assert sorted(ids) == ["test_left_10000", "test_left_10001", "test_right_10000", "test_right_10001"]
        assert [i.split("_")[1] for i in ids] == labels
        assert group.attrs["role"] == "inputs" and group["acts/block3"].shape == (4, 48, 8, 16, 16)
        assert json.loads(handle.attrs["provenance"])["inputs"] == "labels.jsonl"


def test_sidecar_names_the_model(tiny_weights, tiny_world, tmp_path):
    """The committed classifier needs no --model: its sidecar names the factory."""
    from conftest import WEIGHTS

    out = tmp_path / "clf.h5"
    run_cmd("vt-embed", tiny_world / "labels.jsonl", "--split", "test", "--weights", WEIGHTS / "classifier.pt",
            "--layers", "block3", "-o", out, "-q", check=True)
    with h5py.File(out) as handle:
        assert json.loads(handle.attrs["provenance"])["model"]["arch"] == TINY


def test_layer_names_with_slashes_are_escaped(tmp_path, clips_file, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    out = tmp_path / "toy.h5"
    run_cmd("vt-embed", clips_file, "--set", "random_0", "--model", "test_models:channels_last_toy",
            "--layers", "odd/name,mix", "--target", "b", "-o", out, "-q", check=True)
    with h5py.File(out) as handle:
        escaped = h5_name("odd/name")
        assert escaped == "odd%2Fname" and escaped in handle["layers"]
        assert handle["layers"][escaped].attrs["name"] == "odd/name"
        assert handle["layers"][escaped].attrs["channels_last"]
        assert handle["sets/random_0/acts"][escaped].shape == (3, 2, 4, 4, 8)
        assert handle["sets/random_0/acts"][escaped].attrs["name"] == "odd/name"
        assert json.loads(handle.attrs["provenance"])["layers"] == ["odd/name", "mix"]


def test_float16_overflow_is_an_error():
    with pytest.raises(VtcavError, match="exceed the float16 range"):
        _cast(np.array([1e6], np.float32), np.float16, "layer4", "activations")


def test_writer_holds_one_batch_at_a_time(tiny_weights, tmp_path, monkeypatch):
    """Structure, not timing: the source is pulled lazily and each write gets at most one batch."""
    loaded = load_model(TINY, str(tiny_weights))
    pulled, events = [0], []
    rng = np.random.default_rng(0)

    def batches(batch_size):
        for start in range(0, 7, batch_size):
            n = min(batch_size, 7 - start)
            pulled[0] += n
            yield InputBatch([f"c{start + i}" for i in range(n)], rng.integers(0, 256, (n, 16, 32, 32, 3), np.uint8))

    original_write = embed_module.SetSink.write

    def spying_write(self, batch, result: BatchResult):
        events.append((pulled[0], self.written, len(batch.ids), len(result.logits)))
        original_write(self, batch, result)

    monkeypatch.setattr(embed_module.SetSink, "write", spying_write)
    source = InputSet("stream", "random", "random", 7, batches)
    embed(loaded, ["block3"], [source], tmp_path / "s.h5", target="left", batch_size=3)
    assert [e[2] for e in events] == [3, 3, 1]
    for pulled_then, written_before, size, rows in events:
        assert size == rows <= 3
        assert pulled_then - written_before == size      # nothing read ahead, nothing held back
    with h5py.File(tmp_path / "s.h5") as handle:
        assert handle["sets/stream/acts/block3"].shape == (7, 48, 8, 16, 16)
        assert handle["sets/stream/acts/block3"].chunks[0] <= 3   # chunks never span more than a batch here


def test_list_layers_needs_no_inputs_and_output_must_be_given(tiny_weights):
    r = run_cmd("vt-embed", "--model", TINY, "--weights", tiny_weights, "--layers", "block3")
    assert r.returncode == 2 and "give INPUTS and -o OUTPUT.h5" in r.stderr
    r = run_cmd("vt-embed", "--help")
    assert r.returncode == 0
    assert "Examples" in r.stdout and "--list-layers" in r.stdout
    r = run_cmd("vt-embed", "--version")
    assert r.returncode == 0 and r.stdout.startswith("vtcav ")


def test_half_precision_forward_matches_fp32_and_is_recorded(tiny_weights, clips_file, tmp_path):
    """--precision bf16 (the CUDA default; autocast also runs on the CPU) stays close to fp32,
    and the file says which precision produced it."""
    outputs = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"{precision}.h5"
        r = run_cmd("vt-embed", str(clips_file), "--model", TINY, "--weights", str(tiny_weights), "--layers",
                    "block2", "--target", "right", "--precision", precision, "--dtype", "float32",
                    "-o", str(out), "-q")
        assert r.returncode == 0, r.stderr
        with h5io.open_file(out, "embeddings") as handle:
            assert h5io.provenance(handle)["precision"] == precision
            outputs[precision] = (handle["sets/ball_right/acts/block2"][()], handle["sets/ball_right/grads/block2"][()])
    for full, half in zip(outputs["fp32"], outputs["bf16"]):
        assert half.dtype == np.float32
        relative = np.linalg.norm(half - full) / np.linalg.norm(full)
        assert 0 < relative < 0.05     # different (it really ran in bf16), but close
    r = run_cmd("vt-embed", str(clips_file), "--model", TINY, "--weights", str(tiny_weights), "--layers",
                "block2", "--precision", "fp8", "-o", str(tmp_path / "x.h5"))
    assert r.returncode == 2 and "--precision must be one of" in r.stderr


def test_without_layers_the_usual_layers_are_used_and_named(tiny_weights, clips_file, tmp_path):
    out = tmp_path / "usual.h5"
    r = run_cmd("vt-embed", clips_file, "--set", "random_0", "--model", TINY, "--weights", tiny_weights, "-o", out)
    assert r.returncode == 0, r.stderr
    assert "no --layers: the model's usual layers block1,block2,block3" in r.stderr
    with h5py.File(out) as handle:
        assert json.loads(handle.attrs["provenance"])["layers"] == ["block1", "block2", "block3"]


def test_one_run_over_clips_and_videos_with_grad_set(tiny_weights, clips_file, tiny_world, tmp_path):
    """Concept clips and class videos in one vt-embed run: the same arrays as two runs, and
    gradients only for the --grad-set sets (vt-score finds the one set that has them)."""
    common = ["--model", TINY, "--weights", tiny_weights, "--layers", "block2,block3", "--batch-size", "2", "-q"]
    videos = [tiny_world / "labels.jsonl", "--label", "right", "--split", "test"]
    one = tmp_path / "one.h5"
    r = run_cmd("vt-embed", clips_file, *videos, *common, "--target", "right", "--grad-set", "inp*", "-o", one)
    assert r.returncode == 0, r.stderr
    r = run_cmd("vt-embed", clips_file, *common, "-o", tmp_path / "acts.h5")
    assert r.returncode == 0, r.stderr
    r = run_cmd("vt-embed", *videos, *common, "--target", "right", "-o", tmp_path / "grads.h5")
    assert r.returncode == 0, r.stderr
    with h5py.File(one) as both, h5py.File(tmp_path / "acts.h5") as acts, h5py.File(tmp_path / "grads.h5") as grads:
        assert list(both["sets"]) == ["ball_right", "random_0", "inputs"]
        assert "grads" not in both["sets/ball_right"] and "grads" not in both["sets/random_0"]
        for layer in ("block2", "block3"):
            for name, alone in ((f"sets/ball_right/acts/{layer}", acts), (f"sets/inputs/grads/{layer}", grads)):
                np.testing.assert_array_equal(both[name][()], alone[name][()])
        provenance = json.loads(both.attrs["provenance"])
        assert provenance["grad_sets"] == ["inputs"] and provenance["inputs"] == "clips.h5, labels.jsonl"
    r = run_cmd("vt-embed", clips_file, *common, "--grad-set", "inputs", "-o", tmp_path / "x.h5")
    assert r.returncode == 2 and "give --target" in r.stderr
    r = run_cmd("vt-embed", clips_file, *videos, *common, "--target", "right", "--grad-set", "nope",
                "-o", tmp_path / "x.h5")
    assert r.returncode == 2 and "no set matches 'nope'" in r.stderr and not (tmp_path / "x.h5").exists()
