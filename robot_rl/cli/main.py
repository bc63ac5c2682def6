"""``robot-rl``: one console script, Hydra-composed subcommands.

robot-rl collect task=peg_insert episodes=20 out=demos.zarr
robot-rl rollout task=pick_cube policy=expert video=out.mp4
robot-rl collect --help
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from robot_rl.cli import commands

SUBCOMMANDS: dict[str, tuple[str, Callable[[Any], int]]] = {
    "collect": ("collect scripted/random episodes into a zarr store", commands.collect),
    "rollout": ("roll out a policy and write a video", commands.rollout),
    "train": ("train SAC/RLPD, FastTD3, or fine-tune a base (residual, dsrl)", commands.train),
    "eval": ("evaluate a checkpoint (success rate, return, video)", commands.evaluate),
    "plot": ("plot learning curves of run directories to a PNG", commands.plot),
    "bc": ("train a BC base policy (mlp or diffusion) from demos and evaluate it", commands.bc),
    "pipeline": ("demos -> BC base policy -> online fine-tuning, before/after", commands.pipeline),
}


INTERRUPTED = {
    "collect": "every finished episode is saved in the store",
    "pipeline": "its finished stages are kept and reused by the next run",
}


def usage() -> str:
    lines = ["usage: robot-rl <command> [key=value ...]", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, (text, _) in SUBCOMMANDS.items()]
    lines += [
        "",
        "Each command takes Hydra overrides, e.g. task=peg_insert task.obs_mode=pixels.",
        "robot-rl <command> --help prints its settings and defaults.",
    ]
    return "\n".join(lines)


def compose(command: str, overrides: list[str], typed: bool = True):
    """The command's config with overrides applied (a typed object, or the DictConfig with
    required values still missing if not ``typed``); raises ValueError on a bad override.

    Every setting is a typed field, so Hydra's ``+key=value`` (add a key) is refused, but for
    train's free-form ``env.`` settings: an added key would be carried along and ignored."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from robot_rl.configs import register_configs

    added = [
        _override_key(o)
        for o in overrides
        if o.startswith("+") and not (command == "train" and _override_key(o).startswith("env."))
    ]
    if added:
        raise ValueError(unknown_setting(command, overrides, added[0]))
    register_configs(command)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="robot_rl.configs", version_base="1.3"):
            cfg = hydra_compose(config_name=command, overrides=overrides)
        return OmegaConf.to_object(cfg) if typed else cfg
    except (HydraException, OmegaConfBaseException) as exc:
        raise ValueError(explain_config_error(command, overrides, exc)) from exc


def explain_config_error(command: str, overrides: list[str], exc: BaseException) -> str:
    """Hydra's error in our terms: an unknown setting named as such (Hydra suggests adding it
    with '+'), a value of the wrong type with the type it needs."""
    from omegaconf.errors import ValidationError

    text = " ".join(str(exc).split())
    unknown = re.match(r"Could not override '([^']+)'", text)
    if unknown:
        return unknown_setting(command, overrides, unknown.group(1))
    cause = exc.__cause__ or exc.__context__
    while cause is not None and not isinstance(cause, ValidationError):
        cause = cause.__cause__ or cause.__context__
    if cause is not None:
        text += ": " + " ".join(str(cause).split()).split(" full_key:")[0]
    return text


def unknown_setting(command: str, overrides: list[str], key: str) -> str:
    """'unknown setting' for ``key``, with the nearest names at its level."""
    parent, _, name = key.rpartition(".")
    names: list[str] = []
    try:  # the settings at that level, as the other overrides compose them
        rest = [o for o in overrides if _override_key(o) != key]
        cfg = compose(command, rest, typed=False)
        node = OmegaConf.select(cfg, parent) if parent else cfg
        names = [str(k) for k in node if k != "defaults"]
    except Exception:  # another bad override: no suggestion
        pass
    close = [f"{parent}.{n}" if parent else n for n in difflib.get_close_matches(name, names)]
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return f"unknown setting {key!r}{hint}; `robot-rl {command} --help` lists the settings"


def _hydra_value(value: Any) -> str:
    """A JSON-like config value in Hydra's override syntax."""
    if isinstance(value, list):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_hydra_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)  # null, true/false, numbers, double-quoted strings


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def resume_overrides(overrides: list[str]) -> list[str]:
    """``train resume=RUN ...``: the run's saved settings, then the given overrides on top, so a
    run continues as it was configured (its own copies of the base policy and image encoder
    included)."""
    from robot_rl.rl.agents import PRESETS, saved_algo_values
    from robot_rl.rl.trainer import BASE_DIR, ENCODER_DIR

    given = [o.split("=", 1)[1] for o in overrides if _override_key(o) == "resume" and "=" in o]
    if not given or not given[-1]:
        return overrides
    run = Path(given[-1])
    path = run / "checkpoint" / "config.json"
    if not path.exists():
        raise ValueError(f"resume={run}: no {path} (a run directory written by robot-rl train)")
    saved = json.loads(path.read_text())["train"]
    saved.update(out=str(run), resume=str(run))
    for key in (BASE_DIR, ENCODER_DIR):  # the run's own copies, under the same names
        if saved.get(key) and (run / key).is_dir():
            saved[key] = str(run / key)
    algo, env = saved_algo_values(saved.pop("algo")), saved.pop("env")
    asked = [o.split("=", 1)[1] for o in overrides if _override_key(o) == "algo" and "=" in o]
    if asked and asked[-1] in PRESETS and PRESETS[asked[-1]].name != algo["name"]:
        raise ValueError(
            f"resume={run} was trained with algo={algo['name']}; a resumed run keeps its "
            f"learner (algo={asked[-1]} needs a new run, without resume=)"
        )
    restored = [f"algo={algo['name']}"]
    restored += [f"algo.{k}={_hydra_value(v)}" for k, v in algo.items() if k != "name"]
    restored += [f"+env.{k}={_hydra_value(v)}" for k, v in env.items()]
    restored += [f"{k}={_hydra_value(v)}" for k, v in saved.items() if k != "defaults"]
    explicit = {_override_key(o) for o in overrides}
    return [o for o in restored if _override_key(o) not in explicit] + overrides


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, overrides = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        print(f"robot-rl: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    help_wanted = any(a in ("-h", "--help") for a in overrides)
    overrides = [a for a in overrides if a not in ("-h", "--help")]
    if command == "train":  # env.<setting> adds to a free-form dict: no '+' needed
        overrides = [f"+{a}" if a.startswith("env.") else a for a in overrides]
    if command == "plot":  # run directories may be given as bare arguments
        runs = [a for a in overrides if "=" not in a]
        overrides = [a for a in overrides if "=" in a]
        if runs:
            overrides.append(f"runs=[{','.join(runs)}]")
    try:
        if command == "train":
            overrides = resume_overrides(overrides)
        cfg = compose(command, overrides, typed=not help_wanted)
    except ValueError as exc:
        print(f"robot-rl {command}: error: {exc}", file=sys.stderr)
        return 2
    if help_wanted:
        print(f"robot-rl {command}: {SUBCOMMANDS[command][0]}\n")
        shown = OmegaConf.to_container(cfg)
        shown.pop("defaults", None)
        print(OmegaConf.to_yaml(shown))
        return 0
    try:
        return SUBCOMMANDS[command][1](cfg)
    except (ValueError, FileNotFoundError, FloatingPointError) as exc:
        print(f"robot-rl {command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # train says what it saved; collect keeps every finished episode; the others save at
        # their end, so an interrupted one saved nothing (a pipeline keeps its finished stages)
        saved = str(exc) or INTERRUPTED.get(command, "its output was not saved")
        print(f"robot-rl {command}: interrupted; {saved}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
