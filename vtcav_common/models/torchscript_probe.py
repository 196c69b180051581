"""TorchScript models with hookable layers.

TorchScript modules refuse forward hooks, so :class:`TorchScriptProbe` stands in for
one: it mirrors the script's module tree with placeholder modules (``_Slot``) that
carry the original names and types. When hooks are registered on some of them, the
probe compiles a copy of the script's inlined forward graph that also returns the
output of each hooked module (the value of the last operation that module ran; the
rest of the graph then reads a clone of it, so later in-place operations cannot change
what was recorded), runs it without graph optimisation (so autograd records every
operation and the recorded values are ancestors of the logits), and calls the
placeholders with those values: forward hooks fire as for an eager module, and
gradients reach the recorded tensors. Modules are reported in the order their last
operation runs; a module called twice reports its last call.
"""

from __future__ import annotations

import re

import torch
from torch import nn

_PART = re.compile(r"^(?P<name>[^()]+)\((?P<type>[^()]*)\)$")
_IGNORED = ("SELF", "UNKNOWN_INSTANCE")


def module_path(hierarchy: str) -> list[tuple[str, str]]:
    """``"layer1(Sequential).0(BasicBlock).SELF(BasicBlock)"`` -> [("layer1", "Sequential"), ("0", "BasicBlock")]."""
    parts = []
    for part in hierarchy.split("."):
        match = _PART.match(part)
        if match and match.group("name") not in _IGNORED:
            parts.append((match.group("name"), match.group("type")))
    return parts


def _is_tensor(value: torch._C.Value) -> bool:
    return isinstance(value.type(), torch._C.TensorType)


class _Slot(nn.Module):
    """A placeholder for one module of the script: calling it fires hooks with its recorded output."""

    def __init__(self, path: str, type_name: str):
        super().__init__()
        self.path = path
        self.vtcav_type = type_name

    def forward(self, values: dict):
        for child in self.children():
            child(values)
        return values.get(self.path)


class TorchScriptProbe(nn.Module):
    """A TorchScript module whose named layers can be hooked (see the module docstring)."""

    def __init__(self, script: torch.jit.ScriptModule):
        super().__init__()
        self._script = [script]                       # a list: not registered as a submodule
        self._graph = script.forward.graph.copy()
        torch._C._jit_pass_inline(self._graph)
        self._last_node: dict[str, torch._C.Node] = {}
        self._slots: dict[str, _Slot] = {}
        self._build_tree()
        self._compiled: dict[tuple[str, ...], torch._C.ScriptFunction] = {}
        self.register_buffer("_device_marker", torch.zeros(0), persistent=False)

    @property
    def script(self) -> torch.jit.ScriptModule:
        return self._script[0]

    def _build_tree(self) -> None:
        for node in self._graph.nodes():   # top-level nodes only: their outputs are visible to the return
            if not any(_is_tensor(v) for v in node.outputs()):
                continue
            parts = module_path(node.getModuleHierarchy() or "")
            parent: nn.Module = self
            for depth in range(1, len(parts) + 1):
                path = ".".join(name for name, _ in parts[:depth])
                if path not in self._slots:
                    slot = _Slot(path, parts[depth - 1][1])
                    parent.add_module(parts[depth - 1][0], slot)
                    self._slots[path] = slot
                self._last_node[path] = node
                parent = self._slots[path]

    def _hooked(self) -> tuple[str, ...]:
        return tuple(path for path, slot in self._slots.items()
                     if slot._forward_hooks or slot._forward_pre_hooks)

    def _probe(self, paths: tuple[str, ...]) -> torch._C.ScriptFunction:
        """The forward graph, returning ``(original output, *outputs of paths)``."""
        if paths not in self._compiled:
            graph = self._graph.copy()
            nodes = list(graph.nodes())
            index = {id(n): i for i, n in enumerate(self._graph.nodes())}
            values = []
            for path in paths:
                node = nodes[index[id(self._last_node[path])]]
                value = next(v for v in node.outputs() if _is_tensor(v))
                values.append(_detach_downstream(graph, node, value))
            ret = graph.return_node()
            outputs = list(ret.inputs()) + values
            pack = graph.create("prim::TupleConstruct", outputs)
            pack.output().setType(torch._C.TupleType([v.type() for v in outputs]))
            pack.insertBefore(ret)
            graph.eraseOutput(0)
            graph.registerOutput(pack.output())
            self._compiled[paths] = torch._C._create_function_from_graph("vtcav_probe", graph)
        return self._compiled[paths]

    def forward(self, x):
        paths = self._hooked()
        if not paths:
            return self.script(x)
        with torch.jit.optimized_execution(False):
            output = self._probe(paths)(self.script._c, x)
        values = dict(zip(paths, output[1:]))
        for child in self.children():
            child(values)
        return output[0]

    def parameters(self, recurse: bool = True):
        """The script's parameters (so callers can freeze them or find their device)."""
        return self.script.parameters(recurse)

    def _apply(self, fn, *args, **kwargs):
        self.script._apply(fn)
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True):
        self.script.train(mode)
        return super().train(mode)


def _detach_downstream(graph, node, value):
    """Let the rest of the graph read ``clone(value)``; return ``value`` itself for recording."""
    none = graph.insertConstant(None)
    none.node().moveAfter(node)
    clone = graph.create("aten::clone", [value, none])
    clone.output().setType(value.type())
    clone.insertAfter(none.node())
    value.replaceAllUsesAfterNodeWith(clone, clone.output())
    return value
