#!/bin/bash
# Pipeline parallel on CPU ranks (src/fitlm/dist/pipeline.h): `--strategy=pipeline` with N ranks
# runs the layers as N stages, every micro-batch of the step through all of them in 1F1B order,
# and trains what one process trains with the same gradient_accumulation_steps — LoRA on 2 and
# 3 stages, QLoRA with gradient checkpointing, full fine-tuning (saved as one HF shard per stage
# plus the index) — every saved tensor and the eval loss equal to f32 rounding. Without
# gradient_accumulation_steps a pipeline runs 4 micro-batches per stage. Checkpoints hold one
# optimizer file per stage and the joined adapter; resuming one gives the uninterrupted run's
# bytes; resuming with another number of stages or another strategy is refused (exit 2).
set -euo pipefail
# shellcheck source=train_test_lib.sh
source "$(dirname "$0")/train_test_lib.sh"
train() {  # name nproc [extra args]: trains $T/NAME.yaml
  "$BIN" train "$T/$1.yaml" --nproc "$2" "${@:3}" 2>"$T/$1.log" || { cat "$T/$1.log"; exit 1; }
}
# A 4-layer model (the demo's has 2) so that 3 stages each get layers.
/usr/bin/python3 "$HERE/deepen_model.py" "$T/tiny-llama-random" "$T/deep4" 4
deep() {  # name adapter accumulation: a config of the 4-layer model
  cfg "$2" "$3" "$T/$1" | sed "s|^base_model: .*|base_model: $T/deep4|" >"$T/$1.yaml"
}

# Two stages of the 2-layer model: one layer each.
run one4 lora 4 1
run p2 lora 4 2 --strategy=pipeline
grep -q "pipeline over 2 ranks (mpi): 4 micro-batches of 2 per global step" "$T/p2.log"
grep -q "pipeline stage 0 (rank 0): layers 0-0 + embedding, 2 micro-batch(es) in flight" \
  "$T/p2.log"
grep -q "pipeline stage 1 (rank 1): layers 1-1 + final norm, lm_head, loss, 1 micro-batch" \
  "$T/p2.log"
grep -q "warning: pipeline: gradient_accumulation_steps 4 < 4 x 2 stages" "$T/p2.log"
grep -q "16384 trainable parameters (LoRA).* memory plan .* on stage 0" "$T/p2.log"
compare "$T/one4/adapter_model.safetensors" "$T/p2/adapter_model.safetensors"
test ! -e "$T/p2/.adapter-part-0-of-2.safetensors"
# The checkpoint: one optimizer file per stage, the stages' adapter parts joined.
ck=$T/p2/checkpoint-3
test -f "$ck/optimizer-rank-0-of-2.safetensors"
test -f "$ck/optimizer-rank-1-of-2.safetensors"
test ! -e "$ck/.adapter-part-1-of-2.safetensors"
grep -q '"pipeline_stages": 2' "$ck/trainer_state.json"
compare "$T/one4/checkpoint-3/adapter_model.safetensors" "$ck/adapter_model.safetensors"
/usr/bin/python3 - "$ck" <<'PY'
import json, os, struct, sys
def sizes(path):
    with open(path, "rb") as f:
        h = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    return {k: v["shape"] for k, v in h.items() if k != "__metadata__"}
a, b = (sizes(os.path.join(sys.argv[1], f"optimizer-rank-{r}-of-2.safetensors")) for r in (0, 1))
# Each stage holds the state of its own layer's adapters: half of the 16384 LoRA parameters.
want = {f"lora.flat.{k}": [8192] for k in ("master", "adam_m", "adam_v")}
assert a == b == want, (a, b)
PY

# Resume from checkpoint-3 of a finished pipeline run: the same bytes as the run itself.
cp -r "$T/p2" "$T/p2r"
rm -f "$T/p2r/adapter_model.safetensors"
sed "s|$T/p2\$|$T/p2r|" "$T/p2.yaml" >"$T/p2r.yaml"
train p2r 2 --strategy=pipeline --resume "$T/p2r/checkpoint-3"
cmp "$T/p2/adapter_model.safetensors" "$T/p2r/adapter_model.safetensors"
expect_refusal zero2 "written by a pipeline over 2 stages, this run is not a pipeline" \
  "$T/p2r.yaml" --nproc 2 --strategy=zero2 --resume "$T/p2r/checkpoint-3"
expect_refusal single "written by a pipeline over 2 stages, this run is not a pipeline" \
  "$T/p2r.yaml" --resume "$T/p2r/checkpoint-3"
expect_refusal back "was written by not a pipeline, this run is a pipeline over 2 stages" \
  "$T/one4.yaml" --nproc 2 --strategy=pipeline --resume "$T/one4/checkpoint-3"

# Three stages of the 4-layer model; without gradient_accumulation_steps, 4 x 3 micro-batches.
deep one12 lora 12
train one12 1
deep p3 lora 12
sed -i '/^gradient_accumulation_steps:/d' "$T/p3.yaml"
train p3 3 --strategy=pipeline
grep -q "pipeline over 3 stages: 12 micro-batches per step, the 1F1B bubble 14% of it" "$T/p3.log"
if grep -q "warning: pipeline" "$T/p3.log"; then cat "$T/p3.log"; exit 1; fi
compare "$T/one12/adapter_model.safetensors" "$T/p3/adapter_model.safetensors"
expect_refusal stages "written by a pipeline over 3 stages, this run is a pipeline over 2" \
  "$T/p3.yaml" --nproc 2 --strategy=pipeline --resume "$T/p3/checkpoint-3"
expect_refusal layers "3 pipeline stages for a 2-layer model: at most one per layer" \
  "$T/p2.yaml" --nproc 3 --strategy=pipeline

# QLoRA (the base quantized to NF4 on load) with every layer recomputed, over 2 stages.
deep q1 qlora 4
train q1 1
deep q2 qlora 4
train q2 2 --strategy=pipeline
compare "$T/q1/adapter_model.safetensors" "$T/q2/adapter_model.safetensors"

# Full fine-tuning: one HF shard per stage and the index, which loads as the one-process model;
# resuming its checkpoint gives the same bytes.
deep full1 full 4
train full1 1
deep full2 full 4
train full2 2 --strategy=pipeline
test -f "$T/full2/model-00001-of-00002.safetensors"
test -f "$T/full2/model-00002-of-00002.safetensors"
test -f "$T/full2/model.safetensors.index.json"
test -f "$T/full2/config.json"
test -f "$T/full2/tokenizer.json"
test ! -e "$T/full2/model.safetensors"
compare "$T/full1/model.safetensors" "$T/full2"
cp -r "$T/full2" "$T/full2r"
rm -f "$T"/full2r/model-0000*.safetensors "$T/full2r/model.safetensors.index.json"
sed "s|$T/full2\$|$T/full2r|" "$T/full2.yaml" >"$T/full2r.yaml"
train full2r 2 --strategy=pipeline --resume "$T/full2r/checkpoint-3"
for f in model-00001-of-00002.safetensors model-00002-of-00002.safetensors; do
  cmp "$T/full2/$f" "$T/full2r/$f"
done
# The saved model is a model fitlm loads: its eval loss equals the one-process model's.
"$BIN" -q eval --model "$T/full1" --data "$T/upper_train.jsonl" --json >"$T/e1.json"
"$BIN" -q eval --model "$T/full2" --data "$T/upper_train.jsonl" --json >"$T/e2.json"
/usr/bin/python3 - "$T/e1.json" "$T/e2.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert a["tokens"] == b["tokens"] and abs(a["loss"] - b["loss"]) <= 1e-5 * a["loss"], (a, b)
PY

# Evaluation streams the held-out batches through the stages: the one-process eval losses.
cfg lora 4 "$T/ev1" >"$T/ev1.yaml"
printf 'val_set_size: 0.1\neval_steps: 3\n' >>"$T/ev1.yaml"
sed "s|$T/ev1\$|$T/ev2|" "$T/ev1.yaml" >"$T/ev2.yaml"
train ev1 1
train ev2 2 --strategy=pipeline
/usr/bin/python3 - "$T/ev1/metrics.jsonl" "$T/ev2/metrics.jsonl" <<'PY'
import json, sys
def evals(path):
    return [json.loads(l)["eval_loss"] for l in open(path) if "eval_loss" in l]
a, b = evals(sys.argv[1]), evals(sys.argv[2])
assert len(a) == 2 and len(a) == len(b), (a, b)
assert all(abs(x - y) <= 1e-5 * abs(x) for x, y in zip(a, b)), (a, b)
print("eval losses", a, b)
PY

cfg lora 4 "$T/auto" >"$T/auto.yaml"
sed -i 's/^gradient_checkpointing: .*/gradient_checkpointing: auto/' "$T/auto.yaml"
expect_refusal auto "gradient_checkpointing: auto is not built for strategy: pipeline" \
  "$T/auto.yaml" --nproc 2 --strategy=pipeline
echo "pipeline train test passed"
