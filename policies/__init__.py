"""Base policies (behaviour cloning, diffusion) behind ``predict_action(obs) -> chunk``.

Installed as ``robot_rl.policies``. The scripted experts that produce demonstrations live with
their tasks in ``robot_rl.sim.experts``.
"""
