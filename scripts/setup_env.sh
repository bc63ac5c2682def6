#!/usr/bin/env bash
# Create (or refresh) a virtual environment with everything robot_rl needs, apt packages included.
# usage: scripts/setup_env.sh VENV_DIR [pip requirement ...]   (extra requirements pin versions)
# A second run with unchanged inputs only checks a stamp and returns.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"; shift || true
extras=("$@")

apt_pkgs=(libegl1 libegl-mesa0 libgl1-mesa-dri)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

stamp="$venv/.robot_rl_stamp"
want="$(cat pyproject.toml scripts/setup_env.sh | sha256sum | cut -d' ' -f1) ${extras[*]:-}"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi

python3.11 -m venv "$venv" 2>/dev/null || python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
# torch first and pinned: 2.13.0 is the CPU build on CPU-only machines here; a bare "torch"
# requirement would pull a multi-GB CUDA build.
"$venv/bin/pip" install -q torch==2.13.0
"$venv/bin/pip" install -q -e ".[dev,ros,bench]" "${extras[@]}"
echo "$want" > "$stamp"
