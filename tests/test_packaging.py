"""The wheel installs robot_rl.drivers/sim/policies, no generic top-level names, and imports."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_builds_and_imports_from_the_wheel(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("robot_rl-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"robot_rl"}
    for module in (
        "robot_rl/drivers/arm.py",
        "robot_rl/sim/scene.py",
        "robot_rl/policies/__init__.py",
        "robot_rl/control/impedance.py",
    ):
        assert module in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import robot_rl, robot_rl.drivers.arm, robot_rl.sim.env, robot_rl.cli.main;"
        "print(robot_rl.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(site), "MUJOCO_GL": "egl"},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(site))
