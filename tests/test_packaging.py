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
    installed_as = {
        "robot_rl": "robot_rl",
        "drivers": "robot_rl/drivers",
        "sim": "robot_rl/sim",
        "policies": "robot_rl/policies",
    }
    for source, target in installed_as.items():  # every module of the source tree is shipped
        for module in (ROOT / source).rglob("*.py"):
            assert f"{target}/{module.relative_to(ROOT / source).as_posix()}" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import robot_rl, robot_rl.drivers.arm, robot_rl.sim.env, robot_rl.cli.main,"
        " robot_rl.rl.trainer, robot_rl.policies.diffusion, robot_rl.pipeline;"
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
