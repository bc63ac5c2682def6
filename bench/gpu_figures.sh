#!/usr/bin/env bash
# The README's GPU figures, each part under its own time limit so that one slow or failing part
# cannot take the others with it. Needs robot_rl installed in the python it runs (with CUDA
# torch), the PickCube demos and diffusion base of bench/finetune.py in bench_runs/ (made there
# if missing, which takes longer), and MUJOCO_GL=egl for the pixel part.
#
#     bench/gpu_figures.sh OUT_DIR [PART...]
#
# Parts: graph_tests throughput learners learners_nograph pixels pixels_run fasttd3_reach.
# PYTHON=.venv/bin/python chooses the interpreter. Without parts it runs graph_tests (the CUDA
# graph tests of tests/test_compile.py, which CI cannot run), throughput, learners and pixels,
# about 9 minutes on an H200 (pixels may take its full 150 s compiling on a fresh machine,
# where 100 s ran out on an H100); learners_nograph (RLPD without CUDA graphs, for the same-run
# comparison), pixels_run (the pixel RLPD learning curve from 20 rendered demos, ~10 minutes
# with CUDA graphs) and fasttd3_reach need calls of their own. Logs go to OUT_DIR; the tables
# and curves are printed again at the end.
set -u
out=${1:?usage: bench/gpu_figures.sh OUT_DIR [PART...]}
shift
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(graph_tests throughput learners pixels)
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
cd "$(dirname "$0")/.."

run_part() {  # run_part NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout --signal=INT --kill-after=15 "$limit" "$@" >"$out/$name.log" 2>&1
  echo "== $name: exit $?, $((SECONDS - start)) s" | tee -a "$out/summary.txt"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/summary.txt"
for part in "${parts[@]}"; do
  case $part in
    graph_tests) run_part graph_tests 120 "$py" -m pytest -q -p no:cacheprovider \
      tests/test_compile.py -k cuda ;;
    throughput) run_part throughput 200 "$py" bench/update_throughput.py --device cuda \
      --updates 300 --modes "eager fp32" "compiled bf16" "compiled bf16 CUDA graph" \
      --fasttd3-batch 32768 ;;
    learners) run_part learners 330 "$py" bench/learner_speed.py --device cuda --steps 1000 \
      --log-every 250 --learners rlpd dsrl_sac dsrl_na residual fasttd3 ;;
    learners_nograph) run_part learners_nograph 120 "$py" bench/learner_speed.py --device cuda \
      --steps 1000 --log-every 250 --learners rlpd --override algo.cuda_graph=off ;;
    pixels) run_part pixels 150 "$py" bench/learner_speed.py --device cuda --steps 400 \
      --log-every 100 --learners rlpd_pixels ;;
    pixels_run) run_part pixels_run "${PIXELS_RUN_S:-570}" "$py" bench/sample_efficiency.py \
      --task pick_cube --obs pixels --methods rlpd --seeds 0 --steps 20000 --eval-every 2000 --out "$out/runs" ;;
    fasttd3_reach) run_part fasttd3_reach 540 "$py" bench/sample_efficiency.py --task reach \
      --methods fasttd3_gpu --algo-set batch_size=32768 --seeds 0 --steps 400000 \
      --eval-every 20000 --reward dense --out "$out/runs" ;;
    *) echo "unknown part $part (graph_tests throughput learners learners_nograph pixels" \
      "pixels_run fasttd3_reach)" >&2; exit 2 ;;
  esac
done

for part in "${parts[@]}"; do
  echo "== $part"
  grep -E '^\||passed|failed' "$out/$part.log" || tail -5 "$out/$part.log"
done
if [ -d "$out/runs" ]; then
  for f in "$out"/runs/*/eval.csv; do echo "== curve of $(basename "$(dirname "$f")")"; cat "$f"; done
fi
