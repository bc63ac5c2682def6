"""Base policies fine-tuned online: behaviour-cloned MLP and diffusion policies, one interface
(``predict_action(obs) -> chunk``, ``compute_loss(batch)``), saved as safetensors + JSON."""

from robot_rl.policies.base import BasePolicy, load_policy, read_policy_config
from robot_rl.policies.diffusion import DiffusionPolicy, DiffusionPolicyConfig
from robot_rl.policies.mlp import MLPPolicy, MLPPolicyConfig

POLICIES = {
    "mlp": (MLPPolicy, MLPPolicyConfig),
    "diffusion": (DiffusionPolicy, DiffusionPolicyConfig),
}

__all__ = [
    "POLICIES",
    "BasePolicy",
    "DiffusionPolicy",
    "DiffusionPolicyConfig",
    "MLPPolicy",
    "MLPPolicyConfig",
    "load_policy",
    "read_policy_config",
]
