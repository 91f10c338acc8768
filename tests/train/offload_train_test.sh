#!/bin/bash
# Parameter offload (`offload: weights`, RunShape::offload_layers): every decoder layer's frozen
# weights live in host memory and are copied in before the layer runs. On the CPU backend the
# copies are plain copies, so a run with offload must write exactly the bytes of the same run
# without it: LoRA, and QLoRA (the packed 4-bit bytes are what is offloaded) with gradient
# checkpointing; resuming an offloaded run from its checkpoint too. Full fine-tuning with it and
# offload classes that are not built are refused with exit 2.
set -euo pipefail
# shellcheck source=../dist/train_test_lib.sh
source "$(dirname "$0")/../dist/train_test_lib.sh"

offloaded() {  # name adapter: the run's config plus `offload: weights`, trained on one process
  cfg "$2" 2 "$T/$1" >"$T/$1.yaml"
  echo "offload: [weights]" >>"$T/$1.yaml"
  "$BIN" train "$T/$1.yaml" 2>"$T/$1.log" || { cat "$T/$1.log"; exit 1; }
}
for adapter in lora qlora; do
  run "resident-$adapter" "$adapter" 2 1
  offloaded "offloaded-$adapter" "$adapter"
  if ! grep -q "in host memory" "$T/offloaded-$adapter.log"; then
    echo "FAIL: the offloaded run did not report its host memory"; cat "$T/offloaded-$adapter.log"
    exit 1
  fi
  cmp "$T/resident-$adapter/adapter_model.safetensors" \
    "$T/offloaded-$adapter/adapter_model.safetensors"
done

# Resume the offloaded QLoRA run from its checkpoint-3: the uninterrupted run's bytes.
cp -r "$T/offloaded-qlora" "$T/resumed"
rm -f "$T/resumed/adapter_model.safetensors"
sed "s|$T/offloaded-qlora\$|$T/resumed|" "$T/offloaded-qlora.yaml" >"$T/resumed.yaml"
"$BIN" -q train "$T/resumed.yaml" --resume "$T/resumed/checkpoint-3" 2>"$T/resumed.log" ||
  { cat "$T/resumed.log"; exit 1; }
cmp "$T/offloaded-qlora/adapter_model.safetensors" "$T/resumed/adapter_model.safetensors"

cfg full 1 "$T/full" >"$T/full.yaml"
echo "offload: weights" >>"$T/full.yaml"
expect_refusal full "full fine-tuning trains those weights" "$T/full.yaml"
cfg lora 1 "$T/opt" >"$T/opt.yaml"
echo "offload: [weights, optimizer]" >>"$T/opt.yaml"
expect_refusal optimizer "offloading optimizer is not built yet" "$T/opt.yaml"
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
