"""Checkpoints: weights and optimizer state as safetensors, the resolved config as JSON.
Nothing is pickled, so a checkpoint is safe to load from anywhere."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS, CONFIG = "model.safetensors", "config.json"


def flat_state(module: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Module weights plus every optimizer attribute's state, flattened to tensors + JSON."""
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    meta: dict[str, Any] = {}
    for name, opt in vars(module).items():
        if isinstance(opt, torch.optim.Optimizer):
            state = opt.state_dict()
            meta[name] = {"param_groups": state["param_groups"], "keys": {}}
            for pid, entries in state["state"].items():
                meta[name]["keys"][str(pid)] = sorted(entries)
                for key, value in entries.items():
                    tensors[f"optim.{name}.{pid}.{key}"] = torch.as_tensor(value).contiguous().cpu()
    return tensors, meta


def load_flat_state(
    module: nn.Module,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    optimizers: bool = True,
) -> None:
    model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        missing, unexpected = module.load_state_dict(model, strict=False)
    except RuntimeError as exc:  # e.g. a checkpoint written by an older layout of the networks
        first = str(exc).strip().splitlines()[1:2] or [str(exc)]
        raise ValueError(
            f"checkpoint does not fit {type(module).__name__}: {first[0].strip()}"
        ) from exc
    # a learner's counters (its extra state) may postdate the checkpoint: they start afresh
    missing = [k for k in missing if not k.endswith("_extra_state")]
    if missing or unexpected:
        raise ValueError(
            f"checkpoint does not fit {type(module).__name__}: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )
    if not optimizers:
        return
    for name, info in meta.items():
        opt = getattr(module, name)
        state = {
            int(pid): {key: tensors[f"optim.{name}.{pid}.{key}"] for key in keys}
            for pid, keys in info["keys"].items()
        }
        opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})


def save_checkpoint(directory: str | Path, module: nn.Module, config: dict[str, Any]) -> Path:
    """Write ``directory`` atomically (a crash leaves the previous checkpoint)."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors, optim_meta = flat_state(module)
    save_file(tensors, str(tmp / WEIGHTS))
    (tmp / CONFIG).write_text(json.dumps({**config, "optimizers": optim_meta}, indent=2))
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def read_config(directory: str | Path) -> dict[str, Any]:
    """The config of a checkpoint directory; a clear error where it is missing or damaged."""
    path = Path(directory) / CONFIG
    if not path.exists():
        raise FileNotFoundError(f"{directory} is not a checkpoint (needs {WEIGHTS} and {CONFIG})")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is damaged (not JSON: {exc})") from exc


def read_safetensors(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a clear error where it is damaged or cut short."""
    try:
        return load_file(str(path), device=device)
    except Exception as exc:  # safetensors raises its own error type, or OSError
        raise ValueError(f"{path} is damaged ({type(exc).__name__}: {exc})") from exc


def read_checkpoint(directory: str | Path, device: str = "cpu"):
    """(tensors, config) of a checkpoint directory."""
    directory = Path(directory)
    if not (directory / WEIGHTS).exists():
        raise FileNotFoundError(f"{directory} is not a checkpoint (needs {WEIGHTS} and {CONFIG})")
    config = read_config(directory)
    return read_safetensors(directory / WEIGHTS, device), config
