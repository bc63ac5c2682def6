"""The arm interface every arm implements: the MuJoCo arm now, real arms (franky, ur-rtde, a
ros2_control bridge) later. The learning stack and the ROS 2 nodes talk only to this.

All arrays carry a leading batch axis B: a real arm is B = 1, a simulator may step B worlds in
lockstep. Poses are in the arm's base frame, quaternions (w, x, y, z).
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass

import numpy as np


class ArmFault(enum.Flag):
    """Faults an arm reports; real drivers map their error codes onto these."""

    NONE = 0
    JOINT_POSITION_LIMIT = enum.auto()
    JOINT_VELOCITY_LIMIT = enum.auto()
    TORQUE_LIMIT = enum.auto()
    NON_FINITE_COMMAND = enum.auto()
    NON_FINITE_STATE = enum.auto()
    COMMUNICATION = enum.auto()
    NOT_CONNECTED = enum.auto()


@dataclass
class ArmState:
    """What an arm reports. Shapes with B arms."""

    joint_pos: np.ndarray  # (B, 7) rad
    joint_vel: np.ndarray  # (B, 7) rad/s
    ee_pos: np.ndarray  # (B, 3) m
    ee_quat: np.ndarray  # (B, 4)
    ee_twist: np.ndarray  # (B, 6) linear m/s then angular rad/s
    ee_wrench: np.ndarray  # (B, 6) estimated external force N then torque Nm, on the end effector
    gripper_width: np.ndarray  # (B,) m
    faults: np.ndarray  # (B,) int, ArmFault bit flags


@dataclass
class ImpedanceCommand:
    """A Cartesian impedance command. Shapes with B arms."""

    target_pos: np.ndarray  # (B, 3)
    target_quat: np.ndarray  # (B, 4)
    stiffness: np.ndarray  # (B, 6) N/m and Nm/rad; damping follows as 2 zeta sqrt(K)
    gripper_width: np.ndarray  # (B,) m

    def validate(self, batch_size: int) -> None:
        """Raise ValueError on a wrong shape or a non-finite value: a bad command never reaches a
        motor."""
        shapes = {
            "target_pos": (batch_size, 3),
            "target_quat": (batch_size, 4),
            "stiffness": (batch_size, 6),
            "gripper_width": (batch_size,),
        }
        for name, shape in shapes.items():
            value = np.asarray(getattr(self, name))
            if value.shape != shape:
                raise ValueError(f"ImpedanceCommand.{name} has shape {value.shape}, want {shape}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"ImpedanceCommand.{name} is not finite: {value}")


class Arm(abc.ABC):
    """A torque-controlled arm running a Cartesian impedance law at its own control rate."""

    batch_size: int = 1

    @abc.abstractmethod
    def connect(self) -> None:
        """Open the connection and start the controller holding the current pose."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop commanding and release the arm; safe to call twice."""

    @abc.abstractmethod
    def read_state(self) -> ArmState:
        """The latest state."""

    @abc.abstractmethod
    def send_command(self, command: ImpedanceCommand) -> ImpedanceCommand:
        """Set a new impedance target; returns the command actually applied after clamping."""

    @abc.abstractmethod
    def wait(self, duration: float) -> None:
        """Let ``duration`` seconds of control pass. A real arm sleeps; a simulator steps."""

    def faults(self) -> np.ndarray:
        """(B,) ArmFault flags of the latest state."""
        return self.read_state().faults

    def __enter__(self) -> Arm:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
