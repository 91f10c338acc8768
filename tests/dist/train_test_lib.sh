# Shared by the multi-rank training tests (tests/dist/*_train_test.sh), sourced: a temp dir with
# the demo's tiny random Llama and its pretokenized rows, and
#   cfg ADAPTER ACCUMULATION OUTPUT_DIR   a 6-step config (checkpoint at 3, LoRA dropout,
#                                         clipping; QLoRA recomputes every layer)
#   run NAME ADAPTER ACCUMULATION NPROC [ARGS]   trains $T/NAME.yaml into $T/NAME, log NAME.log
#   expect_refusal NAME MESSAGE ARGS...   `fitlm train ARGS` must exit 2 saying MESSAGE
#   compare A B                           two safetensors files equal to f32 rounding
BIN=${FITLM_BIN:?}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
"$BIN" -q demo --dir "$T" --prepare-only
cfg() {  # adapter accumulation output_dir
  cat <<YAML
base_model: $T/tiny-llama-random
datasets: [{path: $T/upper_train.jsonl, type: pretokenized}]
adapter: $1
lora_r: 4
lora_alpha: 8
lora_dropout: 0.1
sequence_len: 32
sample_packing: true
micro_batch_size: 2
gradient_accumulation_steps: $2
max_steps: 6
learning_rate: 1.0e-3
max_grad_norm: 0.5
save_steps: 3
logging_steps: 1
seed: 3
gradient_checkpointing: $([ "$1" = qlora ] && echo true || echo false)
output_dir: $3
YAML
}
run() {  # name adapter accumulation nproc [extra args]
  cfg "$2" "$3" "$T/$1" >"$T/$1.yaml"
  "$BIN" train "$T/$1.yaml" --nproc "$4" "${@:5}" 2>"$T/$1.log" || { cat "$T/$1.log"; exit 1; }
}
expect_refusal() {  # name message args...
  local name=$1 msg=$2 rc=0
  shift 2
  "$BIN" train "$@" 2>"$T/$name.log" || rc=$?
  if [ $rc -ne 2 ] || ! grep -q "$msg" "$T/$name.log"; then
    echo "FAIL: $name: expected exit 2 and '$msg' (rc=$rc)"; cat "$T/$name.log"; exit 1
  fi
}
compare() { /usr/bin/python3 "$HERE/compare_safetensors.py" "$1" "$2"; }

