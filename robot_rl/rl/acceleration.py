"""The learners' fast path: ``torch.compile`` of the update and bf16 autocast, each switched by
an ``auto | on | off`` setting.

- bf16 ``auto`` is on where the hardware does bf16 arithmetic natively: CUDA, and CPUs with
  AVX512-BF16 or AMX (there a bf16 matmul runs ~4x faster than fp32). Weights, optimizer state,
  LayerNorm statistics and the output layers stay fp32; only the hidden matmuls run in bf16.
- compile ``auto`` is on for CUDA and the CPU; if compiling fails (for example no C++ compiler
  for the CPU backend), the update runs eagerly after a warning. ``on`` makes that an error.
- cuda_graph ``auto`` is on for CUDA: after two ordinary updates of each kind (actor step or
  not, batch shape) the whole update (losses, backward, clipping, optimizer step) is captured
  once as a CUDA graph and then replayed, one launch instead of hundreds. At the sizes of these
  networks an update is bound by launching kernels, not by the GPU. If capturing fails, the
  updates go on without graphs after a warning; ``on`` makes that an error.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

SWITCH_VALUES = ("auto", "on", "off")


@dataclass
class AccelerationConfig:
    """The fast-path switches every learner's config has."""

    compile: str = "auto"
    """torch.compile the loss computation: auto (on; eager if compiling fails), on, off."""
    amp: str = "auto"
    """bf16 autocast of the hidden matmuls: auto (CUDA, or a CPU with native bf16), on, off."""
    cuda_graph: str = "auto"
    """Replay each update as one captured CUDA graph: auto (on CUDA; without graphs if capture
    fails), on, off. The CPU never uses graphs."""


def check_switch(value: str, setting: str) -> str:
    if value not in SWITCH_VALUES:
        raise ValueError(f"{setting} must be auto, on or off, got {value!r}")
    return value


def native_bf16(device: torch.device) -> bool:
    """Does ``device`` do bf16 matmuls natively (not by emulation)?"""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        except AttributeError:  # an older torch without these probes
            return False
    return False


def use_bf16(value: str, device: torch.device) -> bool:
    check_switch(value, "amp")
    return native_bf16(device) if value == "auto" else value == "on"


def autocast(device: torch.device, enabled: bool, cache: bool = True):
    """bf16 autocast on ``device`` when ``enabled``; a no-op context otherwise. ``cache=False``
    while capturing a CUDA graph (the cast-weight cache must not outlive a capture)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)


def full_precision(x: torch.Tensor):
    """Context for an output layer: autocast off, so it runs in fp32 on the fp32 input."""
    return torch.autocast(x.device.type, enabled=False)


class MaybeCompiled:
    """``fn`` compiled with ``torch.compile`` (switch ``auto``/``on``) or as it is (``off``).

    ``fn`` must be free of side effects other than random draws (it computes losses; the
    optimizer step stays outside), so rerunning it eagerly after a failed compile is safe.
    The backward pass of a compiled ``fn`` is compiled lazily, inside ``backward()``: a caller
    that sees it fail there hands the error to ``fall_back`` and reruns.
    """

    def __init__(self, fn: Callable, value: str):
        self.fn, self.strict = fn, check_switch(value, "compile") == "on"
        self.compiled = torch.compile(fn) if value != "off" else None

    def __call__(self, *args, **kwargs):
        if self.compiled is None:
            return self.fn(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except Exception as exc:
            if not self.fall_back(exc):
                raise
            return self.fn(*args, **kwargs)

    def fall_back(self, exc: Exception) -> bool:
        """After ``exc`` from the compiled function or its backward: switch to eager with a
        warning and return True, or return False where that is not allowed (``compile=on``)
        or not possible (already eager)."""
        if self.compiled is None or self.strict:
            return False
        warnings.warn(
            f"torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); running the "
            "update eagerly (set compile=off to skip the attempt)",
            RuntimeWarning,
            stacklevel=3,
        )
        self.compiled = None
        return True


class FastStep:
    """The update step the learners share: their loss function (compiled per ``compile``) under
    bf16 autocast where ``amp`` allows, one backward pass, optional gradient-norm clipping per
    parameter group, one optimizer step; replayed as a CUDA graph per ``cuda_graph``. Returns
    the loss function's metrics.

    The loss function's tensor arguments may change from call to call (they are copied into the
    graph's inputs); its keyword arguments and ``clip`` select one graph per distinct value."""

    warmup_calls = 2
    """Ordinary updates of each kind before its capture (compiling and the optimizer's state
    happen there, outside the graph)."""

    def __init__(
        self, losses: Callable, optimizer: torch.optim.Optimizer, cfg: AccelerationConfig
    ) -> None:
        self.losses = MaybeCompiled(losses, cfg.compile)
        self.optimizer, self.amp = optimizer, check_switch(cfg.amp, "amp")
        self.cuda_graph = check_switch(cfg.cuda_graph, "cuda_graph")
        self.bf16: bool | None = None  # decided on the first step, on the parameters' device
        self.graphs: dict | None = None  # None: no graphs (not CUDA, switched off, or failed)
        self.calls: Counter = Counter()

    def __call__(self, *args, clip: tuple = (), **kwargs) -> dict[str, torch.Tensor]:
        """``clip``: (parameters, max_norm) pairs, clipped after the backward pass."""
        if self.bf16 is None:
            self._first_call()
        if self.graphs is None:
            return self._step(args, clip, kwargs)
        leaves, spec = tree_flatten(args)
        key = (
            tuple((x.shape, x.dtype) for x in leaves),
            tuple(sorted(kwargs.items())),
            tuple(max_norm for _, max_norm in clip),
        )
        if key not in self.graphs:
            self.calls[key] += 1
            if self.calls[key] <= self.warmup_calls:
                return self._on_side_stream(args, clip, kwargs)
            try:
                self.graphs[key] = self._capture(leaves, spec, clip, kwargs)
            except Exception as exc:
                if self.cuda_graph == "on":
                    raise
                warnings.warn(
                    f"CUDA graph capture failed ({type(exc).__name__}: {str(exc)[:200]}); "
                    "updating without graphs (set cuda_graph=off to skip the attempt)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self.graphs = None
                return self._step(args, clip, kwargs)
        graph, inputs, metrics = self.graphs[key]
        for static, x in zip(inputs, leaves, strict=True):
            static.copy_(x)
        graph.replay()
        return {k: v.clone() for k, v in metrics.items()}  # the next replay overwrites them

    def _first_call(self) -> None:
        device = self.optimizer.param_groups[0]["params"][0].device
        self.bf16 = use_bf16(self.amp, device)
        if self.cuda_graph == "on" and device.type != "cuda":
            raise ValueError(f"cuda_graph=on needs a CUDA device, the learner is on {device}")
        graphs = self.cuda_graph != "off" and device.type == "cuda"
        self.graphs = {} if graphs else None
        for group in self.optimizer.param_groups:  # step counts stay on the GPU; this also
            group["capturable"] = graphs  # resets the flag of a loaded optimizer state

    def _step(self, args, clip, kwargs) -> dict[str, torch.Tensor]:
        try:
            metrics = self._losses_and_gradients(args, kwargs)
        except Exception as exc:
            if not self.losses.fall_back(exc):
                raise
            metrics = self._losses_and_gradients(args, kwargs)
        for params, max_norm in clip:
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        self.optimizer.step()
        return metrics

    def _losses_and_gradients(self, args, kwargs) -> dict[str, torch.Tensor]:
        device = self.optimizer.param_groups[0]["params"][0].device
        # no cast-weight cache with graphs: not in a capture, nor before (a compiled loss
        # function would recompile when the setting changes)
        with autocast(device, self.bf16, cache=self.graphs is None):
            loss, metrics = self.losses(*args, **kwargs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return metrics

    def _on_side_stream(self, args, clip, kwargs) -> dict[str, torch.Tensor]:
        """An ordinary update on a side stream, as warm-up before capture must be."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            metrics = self._step(args, clip, kwargs)
        torch.cuda.current_stream().wait_stream(stream)
        return metrics

    def _capture(self, leaves, spec, clip, kwargs) -> tuple:
        """(graph, its input tensors, its metric tensors). Capturing runs nothing: the caller
        replays the graph for this call's update."""
        inputs = [x.clone() for x in leaves]
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            metrics = self._step(tree_unflatten(inputs, spec), clip, kwargs)
        return graph, inputs, metrics
