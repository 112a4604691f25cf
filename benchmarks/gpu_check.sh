#!/usr/bin/env bash
# One prepared run for a borrowed GPU machine (torch there; Hydra, OmegaConf and the QM9 cache carried in
# .device_data/ by benchmarks/device_carry.sh --graph; no RDKit): every preset's smoke run on CUDA in bf16
# and fp32 (benchmarks/gpu_check.py), then the GPU speed suite (configs/speed_suite/gpu.yaml). Everything
# goes under $OUT; each part has its own time limit so that the whole stays within 6 minutes.
#   device tool, carry [.device_data]:   bash benchmarks/gpu_check.sh
#   here, on a CPU (what the test runs):  OUT=/tmp/x bash benchmarks/gpu_check.sh --cpu
# --cpu: the same cases shrunk (gpu_check --tiny) on the CPU, and the short speed suite instead of the GPU one;
# further arguments go to benchmarks/gpu_check.py (e.g. --precisions bf16).
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder for the results}"
mkdir -p "$OUT"
if [[ -d .device_data/python ]]; then
    export PYTHONPATH=".device_data/python${PYTHONPATH:+:$PYTHONPATH}" UNITE_CACHE="${UNITE_CACHE:-.device_data/cache}"
fi
export HF_HUB_OFFLINE=1
if [[ "${1:-}" == "--cpu" ]]; then
    shift
    check=(--device cpu --tiny) speed=(speed_suite=short speed_suite.rounds=1 speed_suite.warmup=0 threads=1 device=cpu) check_limit=600 speed_limit=300
else
    check=(--device cuda) speed=(speed_suite=gpu) check_limit=170 speed_limit=180
fi
python - <<'PY' | tee "$OUT/environment.txt"
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
print("device", torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
for name in ("hydra", "e3nn", "torch_geometric", "timm", "rdkit"):
    try:
        __import__(name); print(name, "present")
    except ImportError:
        print(name, "missing")
PY
timeout "$check_limit" python -m benchmarks.gpu_check "${check[@]}" "$@" --out "$OUT/gpu_check" 2>&1 | tee "$OUT/gpu_check.log"
check_status=${PIPESTATUS[0]}
timeout "$speed_limit" python -m benchmarks.run speed "${speed[@]}" name=speed_gpu "out_dir=$OUT/speed" 2>&1 \
    | tee "$OUT/speed.log"
speed_status=${PIPESTATUS[0]}
echo "gpu_check exit $check_status, speed suite exit $speed_status" | tee "$OUT/status.txt"
[[ $check_status -eq 0 && $speed_status -eq 0 ]]
