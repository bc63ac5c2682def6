"""robot_rl: reinforcement learning on real robot arms."""

__version__ = "0.1.0"
