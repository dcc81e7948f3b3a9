#!/usr/bin/env bash
# The GPU figures of bench/README.md, one run: the demo's SFT on 5 seeds at once with GRPO from seed 0, each model
# evaluated and checked against the demo's criteria (bench/gpu/demo.py), then TRL against the plain loop on the
# same GPU (bench/train/sft_vs_loop.py). Needs the demo's Parquet artifacts under DATA (sft_dataset/, rl_prompts/,
# problems/) and the Python packages of bard_core's training and evaluation (no Ray, Prefect or DuckDB server).
#     [PYTHON=.venv/bin/python] bench/gpu/run.sh DATA OUT
# DATA: a folder holding the demo's assemble artifact's sft_dataset/ and rl_prompts/ and its problems artifact's
# problems/ (`bard run --stages problems,teacher,compress,assemble`, then copy them from <home>/artifacts).
set -uo pipefail
data=$1 out=$2 python=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$python" -c "import torch, transformers, trl; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__)"
bars='it/s\]|examples/s\]|s/it\]'  # the libraries' progress bars stay in the logs
timeout 360 "$python" bench/gpu/demo.py --sft-data "$data/sft_dataset" --rl-data "$data/rl_prompts" \
    --problems "$data/problems" --out /tmp/bard-gpu-demo --table "$out/gpu-seeds.md" 2>&1 | tee "$out/demo.log" | grep -v -E "$bars"
for f in /tmp/bard-gpu-demo/seed-0/sft.log /tmp/bard-gpu-demo/seed-0/grpo.log; do [ -f "$f" ] && cp "$f" "$out/"; done
timeout 120 "$python" bench/train/sft_vs_loop.py --rows "$data/sft_dataset" --steps 200 --repeat 2 --threads 2 2>&1 \
    | tee "$out/loop.log" | grep -E "round|tokens/s|threads|plain:|TRL:|Error"
