#!/usr/bin/env bash
# The main job on the embedded default (MuJoCo simulation), end to end: 50 scripted PickCube
# demonstrations -> a diffusion policy trained by BC -> its success rate -> online fine-tuning
# with DSRL -> the success rate after, a learning curve and videos, in outputs/pipeline/.
# Extra arguments go to `robot-rl pipeline` (e.g. algo=residual, task=peg_insert, fresh=true).
set -euo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL=egl
scripts/setup_env.sh .venv
.venv/bin/robot-rl pipeline "$@"
