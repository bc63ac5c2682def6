#!/usr/bin/env bash
# Run the test suite in its own environment: lint, the full suite on current releases, then the
# simulator and control tests again against the lowest versions we claim (MuJoCo 3.3.0,
# gymnasium 1.0, zarr 3.0.8).
set -euo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL=egl PYTHONHASHSEED=0
scripts/setup_env.sh .venv
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest -q "$@"
scripts/setup_env.sh .venv-min mujoco==3.3.0 gymnasium==1.0.0 zarr==3.0.8
.venv-min/bin/python -m pytest -q -m "not slow" tests/test_impedance_closed_loop.py \
  tests/test_envs.py tests/test_experts.py tests/test_episode_store.py tests/test_impedance_law.py
