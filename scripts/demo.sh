#!/usr/bin/env bash
# The README's main job: sets up .venv, trains CartPole-v1, evaluates it, exports it to
# ONNX, TorchScript and torch.export (verified against PyTorch), and plays the ONNX file
# with the torch-free runtime, recording its first episode as a GIF.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
export SDL_VIDEODRIVER=${SDL_VIDEODRIVER:-dummy}

dqnkit train CartPole-v1 --out runs/demo
run_dir=$(ls -td runs/demo/CartPole-v1-0-* | head -n 1)
dqnkit evaluate "$run_dir" --episodes 100
dqnkit export "$run_dir"
dqnkit play "$run_dir/export/policy.onnx" --episodes 10 --gif "$run_dir/cartpole.gif"
echo "plot of the training returns: $run_dir/returns.png"
echo "weights (safetensors, with the env and observation contract): $run_dir/policy.safetensors"
echo "exported policies and their parity report: $run_dir/export/"
echo "the first played episode: $run_dir/cartpole.gif"
