#!/usr/bin/env bash
# The GPU checks of a session that is lent a CUDA device, in one command (about 6 minutes
# on an H200): one seed, one result (tests/core/test_cuda_determinism.py), each preset's
# cost per step (gpu_presets.py) and the presets at 512 px (time_to_quality.py). Seven
# files land in OUT_DIR. Run from the repository root; it needs torch with CUDA, numpy,
# scikit-image, matplotlib and pytest, and takes the package from src/ if not installed.
#
#   bash benchmarks/gpu_session.sh OUT_DIR
set -u
out=${1:?usage: bash benchmarks/gpu_session.sh OUT_DIR}
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cuDNN', torch.backends.cudnn.version())"
} > "$out/machine.txt" 2>&1
# the suite's settings (xdist, warnings as errors) need its extras: run this file alone
timeout 200 python3 -m pytest -n 0 -p no:cacheprovider -p no:warnings -o addopts="" -q \
  tests/core/test_cuda_determinism.py > "$out/determinism.txt" 2>&1
echo "determinism tests: exit $?" >> "$out/machine.txt"
timeout 200 python3 benchmarks/gpu_presets.py --device cuda --steps 60 \
  --out "$out/gpu_presets" > "$out/gpu_presets.txt" 2>&1
echo "gpu_presets.py: exit $?" >> "$out/machine.txt"
timeout 300 python3 benchmarks/time_to_quality.py --sizes 512 --cases "gray denoise" \
  --presets paper balanced quick --device cuda --threads 8 --budget 230 --markdown \
  --out "$out/time_to_quality_512" > "$out/time_to_quality_512.txt" 2>&1
echo "time_to_quality.py: exit $?" >> "$out/machine.txt"
cat "$out/machine.txt"
