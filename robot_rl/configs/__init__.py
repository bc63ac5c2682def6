"""Typed configs, composed by Hydra: ``task`` group × command configs."""

from robot_rl.configs.schema import COMMANDS, register_configs

__all__ = ["COMMANDS", "register_configs"]
