#!/usr/bin/env bash
# The GPU half of issue 15 in one run, for a session that is lent a GPU (BENCHMARKS.md "GPU checks").
# Needs torch with CUDA, einops, safetensors, tqdm and pyyaml (diffusers optional: its PixArt joins the table
# when it imports); runs from the repository root without installing ptdit. Every result lands in $OUT
# (default gpu-results/): JSON from each command, its stderr, nvidia-smi. The limits add up to 9 minutes,
# so `run` with timeout_s 600 holds it; the commands should take far less on one H200 (not yet run on one).
set -uo pipefail
out=${OUT:-gpu-results}
mkdir -p "$out"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
models="PT-DiT/XL DiT-XL/2 PixArt-alpha-XL/2"
if "$py" -c "import diffusers" 2>/dev/null; then models="$models diffusers:PixArtTransformer2DModel"; fi
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
"$py" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" > "$out/torch.txt" 2>&1

run() {  # run NAME SECONDS ARGS...: one ptdit command, JSON to NAME.json, stderr to NAME.err
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$py" -m ptdit "$@" --json > "$out/$name.json" 2> "$out/$name.err"
    echo "$name: exit $? after $((SECONDS - start)) s" | tee -a "$out/summary.txt"
}

# 1. The table on the card, full depth, bf16, SDPA: forward and training step, share of the matmul rate.
run bench-sdpa 180 bench --device cuda --dtype bf16 --model $models --resolution 1024 2048 --repeats 5 --warmup 2
# 2. PT-DiT/XL with FlexAttention (compiled on CUDA): the first calls compile.
run bench-flex 120 bench --device cuda --dtype bf16 --model PT-DiT/XL --attention flex --resolution 1024 2048 \
    --repeats 5 --warmup 2
# 3. The memory estimate against max_memory_allocated: small sizes, then the claim's sizes for PT-DiT/XL.
run memory-small 60 bench memory --device cuda --measure --model PT-DiT/XL DiT-XL/2 PixArt-alpha-XL/2 --depth 2 \
    --resolution 256 512
run memory-claim 90 bench memory --device cuda --measure --model PT-DiT/XL --resolution 2048
run memory-video 90 bench memory --device cuda --measure --model PT-DiT/XL --resolution 512 --frames 288 \
    --checkpointing
