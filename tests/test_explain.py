"""vt-explain: the temporal Sobel filter, selective relevance, Grad-CAM geometry and the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from conftest import WEIGHTS, run_cmd
from vtcav_common.core import h5io
from vtcav_common.models.base import InputSpec, LoadedModel, preprocess
from vtcav_common.formats.records import read_jsonl
from vtcav_common.explain import Explainer, grad_cam, to_channels_first, tokens_to_volume
from vtcav_common.explain.selective import box_mask, motion_share, selective_filter, temporal_derivative
from vtcav_common.synth import render_video

CLASSIFIER = WEIGHTS / "classifier.pt"
FACTORY = "vtcav_common.models.tiny:motion_c3d"
needs_weights = pytest.mark.skipif(not CLASSIFIER.exists(), reason="weights/classifier.pt not trained yet")


# --------------------------------------------------------------------------- the temporal Sobel filter
def test_temporal_sobel_of_an_impulse_by_hand():
    # One voxel at the centre of a 3x3x3 volume. D(p) = sum_k K(k) R(p + k), so D(p) = K(c - p):
    # the frame before the impulse sees +d(+1) s s = +[1 2 1; 2 4 2; 1 2 1], the frame after -that,
    # the impulse's own frame R(t+1) - R(t-1) = 0.
    volume = np.zeros((3, 3, 3), np.float32)
    volume[1, 1, 1] = 1.0
    smoothing = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32)
    derivative = temporal_derivative(volume)
    np.testing.assert_array_equal(derivative[0], smoothing)
    np.testing.assert_array_equal(derivative[1], np.zeros((3, 3)))
    np.testing.assert_array_equal(derivative[2], -smoothing)


def test_temporal_sobel_replicates_the_borders():
    # An impulse in the corner (0, 0, 0). Replicate padding makes R(-1, ., .) = R(0, ., .) and
    # R(., -1, .) = R(., 0, .): at p = (0, 0, 0) the term dt = -1 sums s(-1) + s(0) = 3 on each
    # spatial axis, 9 in all, with d(-1) = -1; dt = +1 sees frame 1, which is empty.
    volume = np.zeros((3, 3, 3), np.float32)
    volume[0, 0, 0] = 1.0
    derivative = temporal_derivative(volume)
    assert derivative[0, 0, 0] == -9.0      # R(1) - R(-1 -> 0), smoothed
    assert derivative[1, 0, 0] == -9.0      # R(2) - R(0)
    assert derivative[2, 0, 0] == 0.0       # R(3 -> 2) - R(1)
    assert derivative[0, 1, 1] == -1.0      # only the corner weight s(-1) s(-1) reaches it
    assert derivative[0, 2, 2] == 0.0


def test_temporal_sobel_of_a_ramp():
    # R(t) = t everywhere: inside, (t+1) - (t-1) = 2 times the smoothing sum 16 = 32; at the first
    # and last frame the replicated edge gives a one-sided difference of 1, i.e. 16.
    volume = np.broadcast_to(np.arange(5, dtype=np.float32)[:, None, None], (5, 4, 4)).copy()
    derivative = temporal_derivative(volume)
    np.testing.assert_array_equal(derivative[1:-1], np.full((3, 4, 4), 32.0))
    np.testing.assert_array_equal(derivative[[0, -1]], np.full((2, 4, 4), 16.0))


def test_selective_filter_keeps_what_changes_and_drops_what_stays():
    volume = np.zeros((6, 8, 8), np.float32)
    volume[:, 1, 1] = 5.0                 # strong but static relevance
    volume[3:, 5, 5] = 1.0                # weaker relevance that appears at frame 3
    kept = selective_filter(volume, sigma=1.0)
    assert kept[:, 1, 1].sum() == 0.0     # static: removed, however strong
    assert kept[3, 5, 5] == 1.0           # the change: kept, at its own value
    changed = kept != 0
    np.testing.assert_array_equal(kept[changed], volume[changed])   # a subset of R, never rescaled


@pytest.mark.parametrize("sigma", [0.0, 0.5, 3.0])
def test_selective_map_of_a_time_constant_map_is_exactly_zero(sigma):
    spatial = np.random.default_rng(0).random((12, 10)).astype(np.float32)
    volume = np.repeat(spatial[None], 7, axis=0)
    assert not selective_filter(volume, sigma).any()


class FrameNet(nn.Module):
    """A model that looks at each frame alone (kernel 1 in time) and averages over time."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(3, 6, (1, 3, 3), padding=(0, 1, 1))
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.pool(self.relu(self.conv(x))).flatten(1))


@pytest.mark.parametrize("method", ["gradcam", "gradient", "gradxinput"])
def test_static_video_has_no_selective_relevance(method):
    spec = InputSpec(frames=8, size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    loaded = LoadedModel(FrameNet().eval(), spec, ["a", "b"], {"arch": "frame_net"})
    moving = render_video(1, 0, "right").frames[:8, ::2, ::2]
    static = np.repeat(moving[:1], 8, axis=0)            # the first frame, frozen
    explainer = Explainer(loaded, method, "conv" if method == "gradcam" else None)
    plain = explainer(preprocess(static[None], spec), target_index=0).relevance
    assert plain.shape == (8, 32, 32) and plain.min() >= 0 and plain.max() > 0
    for sigma in (0.0, 1.0):
        assert not selective_filter(plain, sigma).any()
    moving_map = explainer(preprocess(moving[None], spec), target_index=0).relevance
    assert selective_filter(moving_map, 1.0).any()       # the same model on motion keeps some


# --------------------------------------------------------------------------- Grad-CAM geometry
def test_channels_last_and_tokens_give_the_channels_first_volume():
    volume = torch.randn(5, 2, 3, 4)                      # C x T x H x W
    channels_last = volume.permute(1, 2, 3, 0)            # T x H x W x C (Video Swin)
    assert torch.equal(to_channels_first(channels_last, 3), volume)
    tokens = channels_last.reshape(-1, 5)                 # L x C, row-major over T, H, W (MViT)
    with_class_token = torch.cat([torch.full((1, 5), 99.0), tokens])
    assert torch.equal(tokens_to_volume(tokens, (2, 3, 4), "x"), volume)
    assert torch.equal(tokens_to_volume(with_class_token, (2, 3, 4), "x"), volume)
    with pytest.raises(Exception, match="do not fit the grid"):
        tokens_to_volume(tokens, (2, 2, 4), "x")
    with pytest.raises(Exception, match="--grid"):
        to_channels_first(tokens, 1, None, "blocks.3")


def test_grad_cam_by_hand():
    # Two channels: A0 = 1 everywhere with mean gradient 1; A1 = one voxel with mean gradient -2.
    activation = torch.zeros(2, 2, 2, 2)
    activation[0] = 1.0
    activation[1, 1, 0, 1] = 1.0
    gradient = torch.stack([torch.ones(2, 2, 2), torch.full((2, 2, 2), -2.0)])
    cam = grad_cam(activation, gradient)
    expected = torch.ones(2, 2, 2)
    expected[1, 0, 1] = 0.0                               # ReLU(1 - 2) = 0
    assert torch.equal(cam, expected)


def test_box_mask_uses_pixel_centres():
    mask = box_mask([(1.0, 2.0, 3.0, 4.0)], 6, 6)         # centres 1.5, 2.5 in x; 2.5, 3.5 in y
    assert mask.sum() == 4 and mask[2:4, 1:3].all()
    assert motion_share(np.ones((1, 6, 6)), mask[None]) == pytest.approx(4 / 36)


# --------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def explained(tiny_world, tmp_path_factory):
    """Grad-CAM with the selective map on the held-out videos, moving pixels from the true boxes."""
    if not CLASSIFIER.exists():
        pytest.skip("weights/classifier.pt not trained yet")
    out = tmp_path_factory.mktemp("explain")
    result = run_cmd("vt-explain", tiny_world / "labels.jsonl", "--split", "test", "--model", FACTORY,
                     "--weights", CLASSIFIER, "--layer", "block1", "--selective", "1",
                     "--gt", tiny_world / "gt.jsonl", "-o", out / "maps.h5", "--pictures", out / "pics", check=True)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    return out, records


@needs_weights
def test_outputs_records_maps_and_pictures(explained):
    out, records = explained
    assert len(records) == 8 and {r["method"] for r in records} == {"gradcam"}
    assert all(r["target"] == r["predicted"] for r in records)          # default target: the prediction
    with h5io.open_file(out / "maps.h5", "relevance") as handle:
        provenance = h5io.provenance(handle)
        assert provenance["method"] == "gradcam" and provenance["layer"] == "block1"
        assert provenance["sigma"] == 1.0 and provenance["target_rule"] == "predicted"
        assert provenance["model"]["weights_sha256"] and provenance["input"]["frames"] == 16
        plain, selective = handle["plain"][()], handle["selective"][()]
        assert plain.shape == selective.shape == (8, 16, 64, 64) and plain.dtype == np.float32
        assert h5io.read_strings(handle["ids"]) == [r["video_id"] for r in records]
        kept = selective != 0
        np.testing.assert_array_equal(selective[kept], plain[kept])
        shares = handle["motion_share"][()]
    np.testing.assert_allclose(shares[:, 0], [r["motion_share"]["plain"] for r in records], atol=1e-4)
    pictures = sorted(p.name for p in (out / "pics").iterdir())
    assert pictures == sorted([f"{r['video_id']}.png" for r in records] + [f"{r['video_id']}.gif" for r in records])


@needs_weights
def test_gradcam_localises_the_moving_object(explained, tiny_world):
    out, records = explained
    boxes: dict[tuple[str, int], dict[bool, list]] = {}
    for _, record in read_jsonl(str(tiny_world / "gt.jsonl")):
        boxes.setdefault((record["video_id"], record["frame"]), {True: [], False: []})[record["moving"]].append(
            record["box"])
    hits, on_ball, on_static, ball_area = [], [], [], []
    with h5io.open_file(out / "maps.h5", "relevance") as handle:
        ids = h5io.read_strings(handle["ids"])
        for row, video_id in enumerate(ids):
            plain, frames = handle["plain"][row], handle["frame_indices"][row]
            ball = np.stack([box_mask(boxes[(video_id, int(f))][True], 64, 64) for f in frames])
            static = np.stack([box_mask(boxes[(video_id, int(f))][False], 64, 64) for f in frames])
            hits += [bool(b.flat[int(m.argmax())]) for m, b in zip(plain, ball)]
            on_ball.append(motion_share(plain, ball))
            on_static.append(motion_share(plain, static))
            ball_area.append(ball.mean())
    # The map's peak is on the ball in most frames (pointing game), its mass is concentrated
    # there far beyond the box's area, and the static distractors get little of it.
    assert np.mean(hits) >= 0.75
    assert np.mean(on_ball) >= 5 * np.mean(ball_area)
    assert np.mean(on_ball) >= 3 * np.mean(on_static)
    np.testing.assert_allclose(on_ball, [r["motion_share"]["plain"] for r in records], atol=1e-4)


@needs_weights
def test_selective_share_exceeds_plain_share(tiny_world, tmp_path):
    # Moving pixels from frame differences (the default); input gradients carry static relevance
    # (texture, distractors) that the selective filter removes.
    result = run_cmd("vt-explain", tiny_world / "labels.jsonl", "--split", "test", "--model", FACTORY,
                     "--weights", CLASSIFIER, "--method", "gradient", "--selective", "1", "-q")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    plain = np.mean([r["motion_share"]["plain"] for r in records])
    selective = np.mean([r["motion_share"]["selective"] for r in records])
    assert selective > plain + 0.1, (plain, selective)


@needs_weights
def test_same_inputs_same_bytes(tiny_world, tmp_path):
    video = tiny_world / "videos" / "test_up_10000.mp4"
    for name in ("a", "b"):
        result = run_cmd("vt-explain", video, "--model", FACTORY, "--weights", CLASSIFIER, "--selective", "0.5",
                         "-o", tmp_path / f"{name}.h5", "--pictures", tmp_path / name, "-q")
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    assert (tmp_path / "a" / "test_up_10000.png").read_bytes() == (tmp_path / "b" / "test_up_10000.png").read_bytes()


@pytest.mark.parametrize("option, value, named",
                         [("--layer", "block9", "block9"), ("--target", "sideways", "sideways")])
def test_bad_layer_or_class_is_a_usage_error_with_no_output(tiny_world, tmp_path, option, value, named):
    result = run_cmd("vt-explain", tiny_world / "labels.jsonl", "--model", FACTORY, option, value,
                     "-o", tmp_path / "maps.h5", "--pictures", tmp_path / "pics")
    errors = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert result.returncode == 2 and result.stdout == ""
    assert len(errors) == 1 and errors[0].startswith("vt-explain: error:") and named in errors[0]
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())


def test_corrupt_video_is_a_one_line_error_naming_the_file(tiny_world, tmp_path):
    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes((tiny_world / "videos" / "test_up_10000.mp4").read_bytes()[:2000])
    good = tiny_world / "videos" / "test_left_10000.mp4"
    result = run_cmd("vt-explain", good, corrupt, "--model", FACTORY, "-o", tmp_path / "maps.h5")
    errors = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert result.returncode == 1 and result.stdout == ""       # checked before any video is explained
    assert len(errors) == 1 and str(corrupt) in errors[0] and errors[0].startswith("vt-explain: error:")
    assert not (tmp_path / "maps.h5").exists()


class LayoutNet(nn.Module):
    """One function, three layouts of its middle layer: channels-first (a 1x1x1 Conv3d),
    channels-last (a Linear on B x T x H x W x C, as in Video Swin) or tokens with a class
    token and a block that returns its grid (as torchvision's MViT blocks do)."""

    def __init__(self, layout: str):
        super().__init__()
        torch.manual_seed(0)
        self.layout = layout
        self.stem = nn.Conv3d(3, 4, (3, 4, 4), stride=(1, 4, 4), padding=(1, 0, 0))
        mix = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)          # made before the layout's own modules: same weights in all
        if layout == "first":
            self.mix = nn.Conv3d(4, 4, 1)
            with torch.no_grad():
                self.mix.weight.copy_(mix.weight[:, :, None, None, None])
                self.mix.bias.copy_(mix.bias)
        elif layout == "last":
            self.mix = mix
        else:
            self.block = TokenBlock(mix)

    def forward(self, x):
        a = torch.relu(self.stem(x))                                     # B x C x T x H x W
        if self.layout == "first":
            mixed = self.mix(a).permute(0, 2, 3, 4, 1)
        elif self.layout == "last":
            mixed = self.mix(a.permute(0, 2, 3, 4, 1))
        else:
            grid = tuple(a.shape[2:])
            tokens = torch.cat([torch.zeros_like(a[:, :, 0, 0, :1]).transpose(1, 2),
                                a.flatten(2).transpose(1, 2)], dim=1)    # class token + T*H*W tokens
            mixed, _ = self.block(tokens, grid)
            mixed = mixed[:, 1:]
        return self.head(torch.relu(mixed).flatten(1, -2).mean(1))


class TokenBlock(nn.Module):
    def __init__(self, mix: nn.Linear):
        super().__init__()
        self.mix = mix

    def forward(self, tokens, grid):
        return self.mix(tokens), list(grid)


def test_gradcam_is_the_same_for_channels_first_last_and_tokens():
    spec = InputSpec(frames=4, size=(16, 16), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    clip = render_video(2, 0, "down").frames[:4, ::4, ::4]
    maps = {}
    for layout, layer in (("first", "mix"), ("last", "mix"), ("tokens", "block")):
        loaded = LoadedModel(LayoutNet(layout).eval(), spec, ["a", "b"], {"arch": layout})
        explainer = Explainer(loaded, "gradcam", layer)
        maps[layout] = np.stack([explainer(preprocess(clip[None], spec), target_index=k).relevance for k in (0, 1)])
    assert maps["first"].shape == (2, 4, 16, 16) and maps["first"].max() > 0
    np.testing.assert_allclose(maps["last"], maps["first"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps["tokens"], maps["first"], rtol=1e-5, atol=1e-6)
