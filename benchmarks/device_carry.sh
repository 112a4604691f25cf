#!/usr/bin/env bash
# Builds .device_data/ (git-ignored; under the device tool's 64 MiB carry limit): what a GPU machine with torch
# but without Hydra needs to run the speed suite's GPU targets (configs/speed_suite/gpu.yaml):
#   .device_data/python   hydra-core, omegaconf, antlr4 (pure Python, the versions installed here)
#                         and, with --graph, e3nn, torch_geometric, opt_einsum_fx (when the machine lacks them)
#   .device_data/cache    the QM9 tensor cache (39 MB; the qm9pack wheel is not needed beside it)
# Sizes: 40 MB, or 55-59 MB with --graph; the working tree (~9 MB) travels too, so --graph only where needed.
# Then, on the GPU machine (carry: .device_data):
#   PYTHONPATH=.device_data/python UNITE_CACHE=.device_data/cache \
#       python -m benchmarks.run speed speed_suite=gpu name=speed_gpu out_dir=$OUT
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/.device_data"
version() { python -c "import importlib.metadata as m; print(m.version('$1'))"; }
packages=("hydra-core==$(version hydra-core)" "omegaconf==$(version omegaconf)"
          "antlr4-python3-runtime==$(version antlr4-python3-runtime)")
if [[ "${1:-}" == "--graph" ]]; then
    packages+=("e3nn==$(version e3nn)" "torch_geometric==$(version torch_geometric)"
               "opt_einsum_fx==$(version opt_einsum_fx)" "opt_einsum==$(version opt_einsum)")
fi
rm -rf "$out/python"
python -m pip install --quiet --no-deps --target "$out/python" "${packages[@]}"
rm -rf "$out/python"/{bin,docs,examples,pydevd_plugins}  # installed beside the packages, never imported
find "$out/python" -name __pycache__ -type d -prune -exec rm -rf {} +
cache="${UNITE_CACHE:-$HOME/.cache/unite}/qm9"
if [[ ! -d "$cache" ]]; then
    echo "no QM9 cache at $cache: run any QM9 command here first (python -m pytest tests/modalities/molecule)" >&2
    exit 1
fi
mkdir -p "$out/cache" && rm -rf "$out/cache/qm9" && cp -r "$cache" "$out/cache/qm9"
du -sh "$out" "$out/python" "$out/cache"
