"""Self-authored MJCF: a 7-DoF torque-controlled arm with Franka Panda kinematics, limits and
approximate inertias, a parallel-jaw gripper, a wrist camera and a fixed front camera.

Geometry is built from primitives. One model can hold several independent worlds (one MuJoCo
step then advances all of them with no Python per world); names carry a ``w<k>/`` prefix.
Every arm body carries ``gravcomp=1``:
the simulator cancels the arm's own gravity as the Franka's firmware does, while grasped objects
and payloads stay uncompensated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("finger_left", "finger_right")
TCP_SITE = "tcp"
CAMERAS = ("front", "wrist")

JOINT_LOWER = (-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973)
JOINT_UPPER = (2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973)
TORQUE_LIMITS = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)
VELOCITY_LIMITS = (2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61)
HOME_QPOS = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785)
GRIPPER_MAX_WIDTH = 0.08
GRIPPER_FORCE = 70.0

# Body chain from the published Panda kinematics (modified DH converted to MJCF frames):
# name, pos, quat, mass, centre of mass, diagonal inertia, capsule (from, to, radius).
_LINKS = (
    (
        "link1",
        "0 0 0.333",
        "1 0 0 0",
        4.97,
        "0.004 -0.002 -0.05",
        "0.70 0.70 0.009",
        ("0 0 -0.19", "0 0 0", 0.065),
    ),
    (
        "link2",
        "0 0 0",
        "0.7071068 -0.7071068 0 0",
        0.65,
        "-0.003 -0.029 0.003",
        "0.008 0.003 0.008",
        ("0 0 -0.06", "0 -0.22 0", 0.06),
    ),
    (
        "link3",
        "0 -0.316 0",
        "0.7071068 0.7071068 0 0",
        3.23,
        "0.028 0.039 -0.067",
        "0.037 0.036 0.011",
        ("0 0 -0.1", "0.08 0 0", 0.06),
    ),
    (
        "link4",
        "0.0825 0 0",
        "0.7071068 0.7071068 0 0",
        3.59,
        "-0.053 0.104 0.027",
        "0.026 0.019 0.029",
        ("0 0 0", "-0.08 0.1 0", 0.06),
    ),
    (
        "link5",
        "-0.0825 0.384 0",
        "0.7071068 -0.7071068 0 0",
        1.23,
        "-0.012 0.041 -0.038",
        "0.036 0.029 0.008",
        ("0 0 -0.22", "0 0.08 -0.02", 0.055),
    ),
    (
        "link6",
        "0 0 0",
        "0.7071068 0.7071068 0 0",
        1.67,
        "0.060 -0.014 -0.011",
        "0.002 0.004 0.005",
        ("0 0 -0.03", "0.088 0 0", 0.05),
    ),
    (
        "link7",
        "0.088 0 0",
        "0.7071068 0.7071068 0 0",
        0.74,
        "0.011 -0.004 0.062",
        "0.013 0.010 0.006",
        ("0 0 0", "0 0 0.08", 0.045),
    ),
)


def _arm_xml(p: str) -> str:
    """The arm chain; every name starts with the world prefix ``p``."""
    lines = []
    indent = "    "
    for i, (name, pos, quat, mass, com, inertia, (p0, p1, radius)) in enumerate(_LINKS):
        lo, hi = JOINT_LOWER[i], JOINT_UPPER[i]
        pad = indent * (i + 3)
        lines.append(f'{pad}<body name="{p}{name}" pos="{pos}" quat="{quat}" gravcomp="1">')
        lines.append(f'{pad}  <inertial pos="{com}" mass="{mass}" diaginertia="{inertia}"/>')
        lines.append(f'{pad}  <joint name="{p}joint{i + 1}" range="{lo} {hi}" class="arm_joint"/>')
        lines.append(
            f'{pad}  <geom type="capsule" fromto="{p0} {p1}" size="{radius}" class="arm_link"/>'
        )
    lines.append(_hand_xml(p, indent * 10))
    for i in reversed(range(len(_LINKS))):
        lines.append(f"{indent * (i + 3)}</body>")
    return "\n".join(lines)


def _hand_xml(p: str, pad: str) -> str:
    hand_quat = "0.9238795 0 0 -0.3826834"  # -45 deg about z, as the Franka hand
    return f"""{pad}<body name="{p}hand" pos="0 0 0.107" quat="{hand_quat}" gravcomp="1">
{pad}  <inertial pos="0 0 0.03" mass="0.73" diaginertia="0.001 0.0025 0.0017"/>
{pad}  <geom type="box" size="0.02 0.1 0.025" pos="0 0 0.03" class="arm_link" rgba="0.9 0.9 0.9 1"/>
{pad}  <geom type="cylinder" size="0.04 0.01" pos="0 0 0.005" class="arm_link"/>
{pad}  <site name="{p}{TCP_SITE}" pos="0 0 0.1034" size="0.005" rgba="1 0 0 0.5" group="4"/>
{pad}  <camera name="{p}wrist" pos="0.07 0 0.03" xyaxes="0 -1 0 -0.97 0 -0.24" fovy="75"/>
{pad}  <body name="{p}finger_left" pos="0 0 0.0584" gravcomp="1">
{pad}    <inertial pos="0 0.01 0.025" mass="0.015" diaginertia="2e-6 2e-6 1e-6"/>
{pad}    <joint name="{p}finger_left" type="slide" axis="0 1 0" range="0 0.04" class="finger"/>
{pad}    <geom name="{p}pad_left" type="box" size="0.009 0.004 0.026" pos="0 0.004 0.026"
{pad}          class="finger_pad"/>
{pad}  </body>
{pad}  <body name="{p}finger_right" pos="0 0 0.0584" gravcomp="1">
{pad}    <inertial pos="0 -0.01 0.025" mass="0.015" diaginertia="2e-6 2e-6 1e-6"/>
{pad}    <joint name="{p}finger_right" type="slide" axis="0 -1 0" range="0 0.04" class="finger"/>
{pad}    <geom name="{p}pad_right" type="box" size="0.009 0.004 0.026" pos="0 -0.004 0.026"
{pad}          class="finger_pad"/>
{pad}  </body>
{pad}</body>"""


def world_prefix(index: int) -> str:
    """Name prefix of world ``index`` inside a multi-world model."""
    return f"w{index}/"


def vec(values) -> str:
    return " ".join(f"{float(v):.6g}" for v in values)


@dataclass(frozen=True)
class TaskBodies:
    """Task content for one world: MJCF under <worldbody>, with the world's prefix and origin.

    Free bodies must sit directly under <worldbody>, so tasks place them at ``origin + pos``.
    """

    build: Callable[[str, tuple[float, float, float]], str] = lambda prefix, origin: ""


def _world_xml(k: int, origin: tuple[float, float, float], task: TaskBodies) -> str:
    p = world_prefix(k)
    return f"""    <geom name="{p}floor" type="plane" size="1.5 1.5 0.1" material="grid"
          pos="{vec(np.add(origin, (0.3, 0, -0.75)))}" contype="1" conaffinity="3"/>
    <geom name="{p}table" type="box" size="0.5 0.6 0.375"
          pos="{vec(np.add(origin, (0.45, 0, -0.375)))}"
          material="table" class="object"/>
    <camera name="{p}front" pos="{vec(np.add(origin, (1.1, 0, 0.6)))}" xyaxes="0 1 0 -0.61 0 0.79"
            fovy="55"/>
    <body name="{p}link0" pos="{vec(origin)}" gravcomp="1">
      <inertial pos="-0.04 0 0.06" mass="0.63" diaginertia="0.003 0.003 0.003"/>
      <geom type="cylinder" size="0.07 0.07" pos="0 0 0.07" class="arm_link"/>
{_arm_xml(p)}
    </body>
{task.build(p, origin)}"""


def _world_actuation_xml(k: int) -> tuple[str, str, str]:
    p = world_prefix(k)
    tendon = f"""    <fixed name="{p}finger_width">
      <joint joint="{p}finger_left" coef="1"/>
      <joint joint="{p}finger_right" coef="1"/>
    </fixed>"""
    equality = f'    <joint joint1="{p}finger_left" joint2="{p}finger_right" solref="0.005 1"/>'
    motors = "\n".join(
        f'    <motor name="{p}torque{i + 1}" joint="{p}joint{i + 1}" ctrlrange="{-t} {t}"/>'
        for i, t in enumerate(TORQUE_LIMITS)
    )
    actuators = f"""{motors}
    <position name="{p}gripper" tendon="{p}finger_width" kp="2000" dampratio="1"
              ctrlrange="0 {GRIPPER_MAX_WIDTH}" forcerange="-{GRIPPER_FORCE} {GRIPPER_FORCE}"/>"""
    return tendon, equality, actuators


def scene_xml(
    task: TaskBodies,
    num_worlds: int = 1,
    timestep: float = 0.001,
    world_spacing: float = 20.0,
) -> str:
    """MJCF with ``num_worlds`` independent copies of arm, table, cameras and task.

    Worlds sit ``world_spacing`` apart and the render far plane is shorter than that, so each
    world's cameras see only their own world. All worlds share directional lights, so every world
    renders identically. Per world: 8 actuators (7 joint torques, gripper width) in order, and a
    contiguous qpos/qvel block that starts with the 7 arm joints and the 2 fingers.
    """
    cols = int(np.ceil(np.sqrt(num_worlds)))
    worlds, tendons, equalities, actuators = [], [], [], []
    for k in range(num_worlds):
        origin = (world_spacing * (k // cols), world_spacing * (k % cols), 0.0)
        worlds.append(_world_xml(k, origin, task))
        tendon, equality, actuator = _world_actuation_xml(k)
        tendons.append(tendon)
        equalities.append(equality)
        actuators.append(actuator)
    nl = "\n"
    return f"""<mujoco model="robot_rl_arm">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{timestep}" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <statistic extent="2" center="0.4 0 0.2"/>
  <visual>
    <global offwidth="640" offheight="480"/>
    <map znear="0.005" zfar="{0.4 * world_spacing / 2:.3g}"/>
    <headlight ambient="0.25 0.25 0.25" diffuse="0.3 0.3 0.3" specular="0 0 0"/>
  </visual>
  <default>
    <default class="arm_joint">
      <joint axis="0 0 1" damping="1.0" armature="0.1"/>
    </default>
    <default class="arm_link">
      <geom contype="2" conaffinity="1" rgba="0.95 0.95 0.95 1" friction="0.8 0.01 0.0001"/>
    </default>
    <default class="finger">
      <joint damping="20" armature="0.01"/>
    </default>
    <default class="finger_pad">
      <geom contype="2" conaffinity="1" rgba="0.15 0.15 0.15 1" friction="1.5 0.02 0.0001"
            condim="4" solref="0.004 1" solimp="0.95 0.99 0.001"/>
    </default>
    <default class="object">
      <geom contype="1" conaffinity="3" condim="4" solref="0.004 1" solimp="0.95 0.99 0.001"
            friction="1.0 0.01 0.0001"/>
    </default>
  </default>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1="0.35 0.38 0.42" rgb2="0.3 0.33 0.37"
             width="256" height="256"/>
    <material name="grid" texture="grid" texrepeat="8 8" reflectance="0.05"/>
    <material name="table" rgba="0.55 0.42 0.3 1"/>
  </asset>
  <worldbody>
    <light directional="true" dir="-0.3 -0.2 -1" diffuse="0.6 0.6 0.6" castshadow="false"/>
    <light directional="true" dir="-1 0.4 -0.6" diffuse="0.25 0.25 0.25" castshadow="false"/>
{nl.join(worlds)}
  </worldbody>
  <tendon>
{nl.join(tendons)}
  </tendon>
  <equality>
{nl.join(equalities)}
  </equality>
  <actuator>
{nl.join(actuators)}
  </actuator>
</mujoco>
"""
