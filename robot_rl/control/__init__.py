"""Control laws that run identically on the simulator and on real arms (no simulator imports)."""

from robot_rl.control.impedance import ImpedanceConfig, ImpedanceController, impedance_torque

__all__ = ["ImpedanceConfig", "ImpedanceController", "impedance_torque"]
