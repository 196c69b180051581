"""Naming layers, and finding each layer's output shape and channel axis.

One dummy forward at the model's input size, with a hook on every module, gives each
layer's per-sample output shape (batch axis dropped), how often it ran, and where its
channel axis is. The channel axis matters to whoever reduces over channels later
(Grad-CAM weights, channel statistics): CNN stages give ``C x T x H x W`` (axis 0),
Swin's stages channels-last ``T x H x W x C`` (axis 3), transformer tokens ``L x C``
(axis 1). It is found, in this order, from:

1. layouts the model source declares (``provenance["activation_layouts"]``: exact names
   or shell-style patterns mapped to ``"NCTHW"``, ``"NTHWC"``, ``"NLC"``, ``"NK"``, ...);
2. the kind of module that produced the output: convolutions, batch/group/instance norms
   and pooling put channels first; ``Linear`` and ``LayerNorm`` put them last; a module
   without parameters of its own (ReLU, Dropout) keeps the layout of what ran before it;
   a container takes the layout of the last leaf module that ran inside it when shapes
   agree (a residual sum keeps its branch's layout);
3. the number of axes: 3 or more -> 0, 2 (tokens x channels) -> 1, 1 -> 0.

Leaves of ``torch.export`` programs (graph modules) are judged by the operation that
produced their output, TorchScript placeholders by their original type's name.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import torch
from torch import nn

from ..core.errors import UsageError, VtcavError
from .base import LoadedModel, first_tensor

CHANNELS_FIRST = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LocalResponseNorm,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Upsample,
)
CHANNELS_LAST = (nn.Linear, nn.LayerNorm, nn.RMSNorm, nn.Embedding, nn.Bilinear)
# Words in the type names of TorchScript modules (only names survive scripting).
FIRST_TYPE_WORDS = ("Conv", "BatchNorm", "Pool", "GroupNorm", "InstanceNorm")
LAST_TYPE_WORDS = ("Linear", "LayerNorm", "RMSNorm", "Embedding")
# Graph operations (torch.export leaves) that place channels first / last.
FIRST_OPS = ("conv", "batch_norm", "pool", "group_norm", "instance_norm")
LAST_OPS = ("linear", "layer_norm", "rms_norm", "addmm", "matmul", "bmm")
# Element-wise graph operations that keep their input's layout.
KEEP_OPS = ("relu", "gelu", "silu", "sigmoid", "tanh", "hardtanh", "add", "mul", "dropout", "clone",
            "contiguous", "clamp", "_to_copy", "alias", "detach")
# Modules that never make a useful default layer.
NOT_LAYERS = (nn.Dropout, nn.Dropout2d, nn.Dropout3d, nn.Identity)


@dataclass(frozen=True)
class LayerInfo:
    """One named module as seen in a dummy forward."""

    name: str
    type: str
    shape: tuple[int, ...] | None     # per sample (no batch axis); None if it never ran
    channel_axis: int | None          # within ``shape``
    calls: int

    @property
    def channels_last(self) -> bool:
        return self.shape is not None and len(self.shape) > 1 and self.channel_axis == len(self.shape) - 1

    def to_record(self) -> dict:
        return {"name": self.name, "type": self.type, "shape": list(self.shape) if self.shape else None,
                "channel_axis": self.channel_axis, "channels_last": self.channels_last, "calls": self.calls}


def axis_of_layout(layout: str, ndim: int) -> int | None:
    """``"NTHWC"`` -> 3: the position of ``C`` once the batch axis ``N`` is dropped."""
    layout = layout.upper()
    if layout in ("NK", "NC"):
        return 0
    if "C" not in layout or len(layout) - 1 != ndim:
        return None
    return layout.replace("N", "", 1).index("C")


def declared_axis(name: str, ndim: int, layouts: dict[str, str]) -> int | None:
    if name in layouts:
        return axis_of_layout(layouts[name], ndim)
    for pattern, layout in layouts.items():
        if fnmatch.fnmatchcase(name, pattern):
            return axis_of_layout(layout, ndim)
    return None


def axis_by_rank(ndim: int) -> int | None:
    if ndim == 0:
        return None
    return 1 if ndim == 2 else 0


def _graph_side(module: nn.Module) -> str | None:
    """'first'/'last' from the operation that produced a graph module's output."""
    graph = getattr(module, "graph", None)
    nodes = getattr(graph, "nodes", None)
    if nodes is None:
        return None
    output = next((n for n in reversed(list(nodes)) if n.op == "output"), None)
    node = output.args[0] if output is not None and output.args else None
    for _ in range(8):
        while isinstance(node, (tuple, list)) and node:
            node = node[0]
        if not isinstance(node, torch.fx.Node) or node.op != "call_function":
            return None
        target = str(getattr(node.target, "__name__", node.target)).lower()
        if any(op in target for op in FIRST_OPS):
            return "first"
        if any(op in target for op in LAST_OPS):
            return "last"
        if not any(op in target for op in KEEP_OPS):
            return None
        node = next((a for a in node.args if isinstance(a, torch.fx.Node)), None)
    return None


def leaf_side(module: nn.Module) -> str | None:
    if isinstance(module, CHANNELS_FIRST):
        return "first"
    if isinstance(module, CHANNELS_LAST):
        return "last"
    type_name = getattr(module, "vtcav_type", None)   # a TorchScript placeholder's original type
    if type_name:
        if any(word in type_name for word in FIRST_TYPE_WORDS):
            return "first"
        if any(word in type_name for word in LAST_TYPE_WORDS):
            return "last"
        return None
    return _graph_side(module)


class _Tracer:
    """Hooks on every module; records shapes, call counts and inferred channel axes."""

    def __init__(self, module: nn.Module, layouts: dict[str, str]):
        self.layouts = layouts
        self.modules = {name: m for name, m in module.named_modules() if name}
        self.leaves = {name for name, m in self.modules.items() if not any(True for _ in m.children())}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.axes: dict[str, int | None] = {}
        self.calls: dict[str, int] = {name: 0 for name in self.modules}
        self.leaf_trail: list[tuple[tuple[int, ...], int | None]] = []   # leaf outputs, in order
        self.starts: dict[str, list[int]] = {}
        self.handles: list = []

    def __enter__(self) -> "_Tracer":
        for name, m in self.modules.items():
            try:
                self.handles.append(m.register_forward_pre_hook(self._pre(name)))
                self.handles.append(m.register_forward_hook(self._post(name)))
            except RuntimeError as err:  # TorchScript modules cannot be hooked
                raise VtcavError(f"cannot hook layers of this model ({err}); use a torch.export "
                                 f"program (.pt2) or a package.module:factory instead") from None
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()

    def _pre(self, name: str):
        def hook(_module, _inputs):
            self.starts.setdefault(name, []).append(len(self.leaf_trail))
        return hook

    def _post(self, name: str):
        def hook(module, _inputs, output):
            start = self.starts[name].pop()
            self.calls[name] += 1
            try:
                tensor = first_tensor(output)
            except TypeError:
                return None
            shape = tuple(int(s) for s in tensor.shape[1:])
            axis = self._infer(name, module, shape, start)
            self.shapes[name], self.axes[name] = shape, axis
            if name in self.leaves:
                self.leaf_trail.append((shape, axis))
            return None
        return hook

    def _infer(self, name: str, module: nn.Module, shape: tuple[int, ...], start: int) -> int | None:
        ndim = len(shape)
        declared = declared_axis(name, ndim, self.layouts)
        if declared is not None:
            return declared
        if name in self.leaves:
            side = leaf_side(module)
            if side is not None and ndim:
                return 0 if side == "first" else ndim - 1
            previous = self.leaf_trail[-1] if self.leaf_trail else None
        else:
            previous = self.leaf_trail[-1] if len(self.leaf_trail) > start else None
        if previous is not None and previous[0] == shape:
            return previous[1]
        return axis_by_rank(ndim)


def dummy_input(loaded: LoadedModel, batch: int = 1, device: torch.device | str | None = None) -> torch.Tensor:
    """A deterministic normalised-looking clip batch in the model's layout."""
    spec = loaded.input_spec
    batch = getattr(loaded, "fixed_batch", None) or batch
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, spec.frames, *spec.size, generator=generator)
    if spec.layout == "NTCHW":
        x = x.permute(0, 2, 1, 3, 4).contiguous()
    return x.to(device or model_device(loaded.module))


def model_device(module: nn.Module) -> torch.device:
    tensor = next(iter(module.parameters()), None)
    if tensor is None:
        tensor = next(iter(module.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def describe_layers(loaded: LoadedModel) -> dict[str, LayerInfo]:
    """Every named module with its output shape, channel axis and call count (one dummy forward).

    A large model on the CPU runs on the ``meta`` device first (shapes without arithmetic:
    a Video Swin at 32 x 224 x 224 costs seconds less than a real forward pass); a model
    that cannot run there (data-dependent control flow, TorchScript) gets a real forward.
    A small model, or one on a GPU, gets the real forward straight away: the meta device's
    first use imports torch's decompositions and dynamo (about 2.5 s here), far more than
    the forward pass of one small clip.
    """
    layouts = dict(loaded.provenance.get("activation_layouts") or {})
    if not isinstance(loaded.module, torch.jit.ScriptModule) and not hasattr(loaded.module, "script") \
            and not _cheap_forward(loaded):
        try:
            return _trace(loaded, layouts, on_meta=True)
        except Exception:  # noqa: BLE001  (any failure on meta: the real forward below says what is wrong)
            pass
    return _trace(loaded, layouts, on_meta=False)


# Weights x input positions (T x H x W): an upper bound on a forward pass's multiply-adds.
# Below it one real forward on this 2-core CPU takes about a second or less (r3d_18 at
# 16 x 112 x 112: 6.6e12); Video Swin at 16 x 224 x 224 (2.2e13) is above.
CHEAP_FORWARD_BOUND = 1e13


def _cheap_forward(loaded: LoadedModel) -> bool:
    module = loaded.module
    if model_device(module).type != "cpu":
        return True
    spec = loaded.input_spec
    positions = spec.frames * spec.size[0] * spec.size[1]
    return sum(p.numel() for p in module.parameters()) * positions <= CHEAP_FORWARD_BOUND


def _trace(loaded: LoadedModel, layouts: dict[str, str], on_meta: bool) -> dict[str, LayerInfo]:
    from torch.func import functional_call

    module = loaded.module
    with _Tracer(module, layouts) as tracer, torch.no_grad():
        try:
            if on_meta:   # the module's own hooks fire; its parameters are swapped for meta stand-ins
                stand_ins = {name: torch.empty_like(t, device="meta")
                             for name, t in [*module.named_parameters(), *module.named_buffers()]}
                functional_call(module, stand_ins, (dummy_input(loaded, device="meta"),), strict=False)
            else:
                module(dummy_input(loaded))
        except (RuntimeError, ValueError, AssertionError) as err:
            if on_meta:
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            spec = loaded.input_spec
            raise VtcavError(f"model {loaded.provenance.get('arch', '?')} fails on a {spec.frames}x"
                             f"{spec.size[0]}x{spec.size[1]} clip ({first[:200]}); check --frames/--size") from None
    return {name: LayerInfo(name, getattr(m, "vtcav_type", type(m).__name__), tracer.shapes.get(name),
                            tracer.axes.get(name), tracer.calls[name])
            for name, m in tracer.modules.items()}


def default_layers(module: nn.Module) -> list[str]:
    """The layers worth listing by default: the top-level modules, and the members of
    numbered containers (Sequential/ModuleList) that hold blocks rather than single ops:
    ``layer1..4`` and their blocks for ResNets, ``features.N`` and their blocks for Swin,
    ``blocks.N`` for MViT, ``encoder.layer.N`` for transformers' encoders, ``block1..3`` for the
    tiny classifier."""
    names: list[str] = []

    def visit(prefix: str, parent: nn.Module) -> None:
        for child_name, child in parent.named_children():
            full = f"{prefix}.{child_name}" if prefix else child_name
            if isinstance(child, NOT_LAYERS):
                continue
            names.append(full)
            only = list(child.children())
            if _numbered_blocks(child) or (not prefix and len(only) == 1 and _numbered_blocks(only[0])):
                visit(full, child)   # a top-level wrapper of one such container too: transformers' encoder

    visit("", module)
    return names


def _numbered_blocks(module: nn.Module) -> bool:
    """A Sequential/ModuleList whose members hold blocks rather than single ops."""
    members = list(module.named_children())
    return bool(members) and all(n.isdigit() for n, _ in members) and \
        any(any(True for _ in m.children()) for _, m in members)


POOLING = (nn.MaxPool3d, nn.AvgPool3d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d,
           nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def usual_layers(loaded: LoadedModel, infos: dict[str, LayerInfo] | None = None) -> list[str]:
    """The layers explained when the user names none.

    What the model source declares (a network's stages: ``features.0/2/4/6`` for
    torchvision's Swin, ``layer1..4`` for 3D ResNets, the tiny classifier's
    ``block1..3``); otherwise the top-level modules whose output is still a T x H x W
    grid (4 axes per sample), pooling layers left out.
    """
    if loaded.usual_layers:
        return list(loaded.usual_layers)
    infos = infos or describe_layers(loaded)
    top = [name for name, child in loaded.module.named_children()
           if not isinstance(child, NOT_LAYERS + POOLING) and name in infos]
    grids = [name for name in top if infos[name].shape is not None and len(infos[name].shape) == 4]
    if not grids:
        raise UsageError(f"model {loaded.provenance.get('arch', '?')} declares no usual layers and none of its "
                         f"top-level modules gives a T x H x W grid: name them with --layers (see --list-layers)")
    return grids


def parse_layer_list(text: str | None) -> list[str]:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    if len(set(names)) != len(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        raise UsageError(f"layer(s) named twice in --layers: {', '.join(duplicated)}")
    return names


def resolve_layers(loaded: LoadedModel, requested: list[str]) -> list[str]:
    """Check that each requested layer exists (with a hint for near misses)."""
    known = loaded.layer_names()
    unknown = [n for n in requested if n not in known]
    if unknown:
        import difflib

        hints = []
        for name in unknown[:3]:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hints.append(f"{name} (did you mean {', '.join(close)}?)" if close else name)
        raise UsageError(f"unknown layer(s) {'; '.join(hints)} in model {loaded.provenance.get('arch', '?')}; "
                         f"see vt-embed --list-layers")
    return requested


def format_table(infos: list[LayerInfo]) -> list[str]:
    """Aligned text columns for ``--list-layers`` (header line starts with '#')."""
    rows = [("# name", "type", "shape", "channel_axis", "calls")]
    for info in infos:
        shape = "x".join(map(str, info.shape)) if info.shape is not None else "-"
        if info.shape == ():
            shape = "scalar"
        axis = "-" if info.channel_axis is None else str(info.channel_axis)
        rows.append((info.name, info.type, shape, axis, str(info.calls)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return ["  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row)).rstrip()
            for row in rows]
