"""The learners' fast path: ``torch.compile`` of the update and bf16 autocast, each switched by
an ``auto | on | off`` setting.

- bf16 ``auto`` is on where the hardware does bf16 arithmetic natively: CUDA, and CPUs with
  AVX512-BF16 or AMX (there a bf16 matmul runs ~4x faster than fp32). Weights, optimizer state,
  LayerNorm statistics and the output layers stay fp32; only the hidden matmuls run in bf16.
- compile ``auto`` is on for CUDA and the CPU; if compiling fails (for example no C++ compiler
  for the CPU backend), the update runs eagerly after a warning. ``on`` makes that an error.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable

import torch

SWITCH_VALUES = ("auto", "on", "off")


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


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on ``device`` when ``enabled``; a no-op context otherwise."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def full_precision(x: torch.Tensor):
    """Context for an output layer: autocast off, so it runs in fp32 on the fp32 input."""
    return torch.autocast(x.device.type, enabled=False)


class MaybeCompiled:
    """``fn`` compiled with ``torch.compile`` (switch ``auto``/``on``) or as it is (``off``).

    ``fn`` must be free of side effects other than random draws (it computes losses; the
    optimizer step stays outside), so rerunning it eagerly after a failed compile is safe.
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
            if self.strict:
                raise
            warnings.warn(
                f"torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); running the "
                "update eagerly (set compile=off to skip the attempt)",
                RuntimeWarning,
                stacklevel=2,
            )
            self.compiled = None
            return self.fn(*args, **kwargs)


class FastStep:
    """The update step the learners share: their loss function (compiled per ``compile``) under
    bf16 autocast where ``amp`` allows, one backward pass, optional gradient-norm clipping per
    parameter group, one optimizer step. Returns the loss function's metrics."""

    def __init__(
        self, losses: Callable, optimizer: torch.optim.Optimizer, compile: str, amp: str
    ) -> None:
        self.losses = MaybeCompiled(losses, compile)
        self.optimizer, self.amp = optimizer, check_switch(amp, "amp")
        self.bf16: bool | None = None  # decided on the first step, on the parameters' device

    def __call__(self, *args, clip: tuple = (), **kwargs) -> dict[str, torch.Tensor]:
        """``clip``: (parameters, max_norm) pairs, clipped after the backward pass."""
        device = self.optimizer.param_groups[0]["params"][0].device
        if self.bf16 is None:
            self.bf16 = use_bf16(self.amp, device)
        with autocast(device, self.bf16):
            loss, metrics = self.losses(*args, **kwargs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for params, max_norm in clip:
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        self.optimizer.step()
        return metrics
