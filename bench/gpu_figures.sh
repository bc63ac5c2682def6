#!/usr/bin/env bash
# Every GPU figure of the README in one go, each part under its own time limit so that one slow
# or failing part cannot take the others with it. Needs robot_rl installed in the python on PATH
# (with CUDA torch), the PickCube demos and diffusion base of bench/finetune.py in bench_runs/
# (made there if missing, which takes longer), and MUJOCO_GL=egl for the pixel rows.
#
#     bench/gpu_figures.sh OUT_DIR          # PYTHON=.venv/bin/python to choose the interpreter
#
# Logs and tables go to OUT_DIR; the tables are printed again at the end.
set -u
out=${1:?usage: bench/gpu_figures.sh OUT_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
cd "$(dirname "$0")/.."

part() {  # part NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout --signal=INT --kill-after=15 "$limit" "$@" >"$out/$name.log" 2>&1
  echo "== $name: exit $?, $((SECONDS - start)) s" | tee -a "$out/summary.txt"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/summary.txt"
part throughput 140 "$py" bench/update_throughput.py --device cuda --updates 300 \
  --modes "eager fp32" "compiled bf16" --fasttd3-batch 32768
part learners 200 "$py" bench/learner_speed.py --device cuda --steps 1500 --log-every 300 \
  --learners rlpd dsrl_sac dsrl_na residual fasttd3
part fasttd3_reach 120 "$py" bench/sample_efficiency.py --task reach --methods fasttd3_gpu \
  --algo-set batch_size=32768 --seeds 0 --steps 300000 --eval-every 20000 --reward dense \
  --out "$out/runs"
part pixels 100 "$py" bench/learner_speed.py --device cuda --steps 400 --log-every 100 \
  --learners rlpd_pixels

for name in throughput learners fasttd3_reach pixels; do
  echo "== $name"
  grep -E '^\|' "$out/$name.log" || tail -5 "$out/$name.log"
done
echo "== FastTD3 Reach curve"
cat "$out"/runs/*/eval.csv
