#!/bin/bash
# Offload (`offload:`): `weights` keeps every decoder layer's frozen weights in host memory,
# copied in before the layer runs (RunShape::offload_layers); `optimizer` keeps the f32 masters
# and AdamW moments there (RunShape::offload_optimizer); `activations` every layer's input
# (RunShape::offload_activations). On the CPU backend host memory is where everything is anyway,
# so a run with offload must write exactly the bytes of the same run without it: weights with
# LoRA and QLoRA (the packed 4-bit bytes are what is offloaded, with gradient checkpointing),
# optimizer with LoRA and full fine-tuning, activations with LoRA and full fine-tuning, all
# three with QLoRA, optimizer with zero2 over 2 ranks, weights with a pipeline over 2 stages; resuming offloaded runs from their
# checkpoints too. Full fine-tuning with offloaded weights, unknown offload classes, and a host
# side over the machine's memory are refused.
set -euo pipefail
# shellcheck source=../dist/train_test_lib.sh
source "$(dirname "$0")/../dist/train_test_lib.sh"

offloaded() {  # name adapter accumulation classes [train args]: `run` plus `offload: [classes]`
  cfg "$2" "$3" "$T/$1" >"$T/$1.yaml"
  echo "offload: [$4]" >>"$T/$1.yaml"
  "$BIN" train "$T/$1.yaml" "${@:5}" 2>"$T/$1.log" || { cat "$T/$1.log"; exit 1; }
  if ! grep -q "in host memory" "$T/$1.log"; then
    echo "FAIL: $1 did not report its host memory"; cat "$T/$1.log"; exit 1
  fi
}
same() {  # two runs' outputs byte-identical: adapter or full model, and checkpoint-3
  local out=adapter_model.safetensors
  [ -f "$T/$1/$out" ] || out=model.safetensors
  cmp "$T/$1/$out" "$T/$2/$out"
  cmp "$T/$1/checkpoint-3/trainable.safetensors" "$T/$2/checkpoint-3/trainable.safetensors"
  cmp "$T/$1/checkpoint-3/optimizer_m.safetensors" "$T/$2/checkpoint-3/optimizer_m.safetensors"
}
resumed() {  # name: resume the finished run NAME from its checkpoint-3; same bytes as the run
  cp -r "$T/$1" "$T/$1-r"
  rm -f "$T/$1-r/adapter_model.safetensors" "$T/$1-r/model.safetensors"
  sed "s|$T/$1\$|$T/$1-r|" "$T/$1.yaml" >"$T/$1-r.yaml"
  "$BIN" -q train "$T/$1-r.yaml" --resume "$T/$1-r/checkpoint-3" 2>"$T/$1-r.log" ||
    { cat "$T/$1-r.log"; exit 1; }
  local out=adapter_model.safetensors
  [ -f "$T/$1/$out" ] || out=model.safetensors
  cmp "$T/$1/$out" "$T/$1-r/$out"
}
for adapter in lora qlora full; do run "resident-$adapter" "$adapter" 2 1; done
offloaded w-lora lora 2 weights
same resident-lora w-lora
offloaded w-qlora qlora 2 weights
same resident-qlora w-qlora
resumed w-qlora
offloaded o-lora lora 2 optimizer
same resident-lora o-lora
offloaded o-full full 2 optimizer
same resident-full o-full
resumed o-full
offloaded wo-qlora qlora 2 "weights, optimizer"
same resident-qlora wo-qlora
offloaded a-lora lora 2 activations
same resident-lora a-lora
offloaded a-full full 2 activations
same resident-full a-full
resumed a-full
offloaded woa-qlora qlora 2 "weights, optimizer, activations"
same resident-qlora woa-qlora
resumed woa-qlora

# zero2 over 2 ranks: the rank's block of the masters and moments in host memory.
run z2 lora 1 2 --strategy=zero2
offloaded z2o lora 1 optimizer --nproc 2 --strategy=zero2
cmp "$T/z2/adapter_model.safetensors" "$T/z2o/adapter_model.safetensors"

cfg full 1 "$T/full" >"$T/full.yaml"
echo "offload: weights" >>"$T/full.yaml"
expect_refusal full "full fine-tuning trains those weights" "$T/full.yaml"
# A pipeline over 2 stages: each stage's layers' weights in host memory.
run p2 lora 1 2 --strategy=pipeline
offloaded p2o lora 1 weights --nproc 2 --strategy=pipeline
cmp "$T/p2/adapter_model.safetensors" "$T/p2o/adapter_model.safetensors"
cfg lora 1 "$T/gpu" >"$T/gpu.yaml"
echo "offload: [weights, gpu]" >>"$T/gpu.yaml"
expect_refusal unknown "expected weights, optimizer, activations or none, found 'gpu'" \
  "$T/gpu.yaml"

# A host side over the machine's available memory stops before anything is pinned (exit 3):
# Llama-3.1-70B's layers in f32 (the CPU backend's dtype) are ~255 GiB.
rc=0
"$BIN" bench --arch llama-3.1-70b --backend cpu --offload-weights --steps 1 --warmup 0 \
  >"$T/host.log" 2>&1 || rc=$?
if [ $rc -ne 3 ] || ! grep -q "in host memory but this machine has" "$T/host.log"; then
  echo "FAIL: a host plan over the machine's memory was not refused with exit 3 (rc=$rc)"
  cat "$T/host.log"; exit 1
fi
echo "offload train test passed"
