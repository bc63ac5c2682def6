#!/usr/bin/env bash
# The main job on the embedded default (MuJoCo simulation): scripted demonstrations of PickCube
# to zarr, then a rendered expert rollout video. Outputs land in outputs/.
set -euo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL=egl
scripts/setup_env.sh .venv
.venv/bin/robot-rl collect task=pick_cube episodes=20 out=outputs/demos.zarr "$@"
.venv/bin/robot-rl rollout task=pick_cube policy=expert episodes=2 video=outputs/rollout.mp4
