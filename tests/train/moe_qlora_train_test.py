"""QLoRA on mixture-of-experts models, end to end on the CPU: `adapter: qlora` on a 16-bit
Qwen3-MoE (Hub per-expert tensors, a dense layer among the sparse ones) and a Mixtral (fused
transformers-5 experts, the load-balancing loss on) quantizes the attention projections, the
dense layer's MLP and every sparse layer's experts to NF4 with double quantization on load — each
fused expert tensor one flat array of blocks of 64, as a dense weight, whose blocks here cross
expert boundaries — and keeps the routers 16-bit.

Checks, per model:
  - the QLoRA run lowers the loss and writes its adapter;
  - its adapter is byte-identical to a LoRA run on the base whose quantized weights were replaced
    by their dequantized values (an independent PyTorch implementation of bitsandbytes' rules,
    tests/io/bnb4bit_torch_test.py, rounded to the checkpoint's bf16): the 4-bit model computes
    exactly with those weights;
  - it differs from a LoRA run on a base where only the experts keep their 16-bit values (so the
    experts were quantized), and from one where only the routers were quantized too (so the
    routers were not);
  - `fitlm quantize` of the 16-bit base (per-expert tensors stay 16-bit) trains to the same
    adapter bytes;
  - `fitlm merge` of the QLoRA adapter into the 16-bit base works and the merged model evaluates.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
sys.path.insert(0, os.path.join(HERE, "..", "io"))
import bnb4bit_torch_test as bnb  # noqa: E402
import moe_reference as moe  # noqa: E402

FITLM = os.environ.get("FITLM_BIN", "build/fitlm")
DTYPE = torch.bfloat16
NESTED_MAP = bnb.bnb_dynamic_map()


def run(args):
    """(stdout, stderr) of a fitlm command that must succeed."""
    p = subprocess.run([FITLM] + args, capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(f"fitlm {' '.join(args[:2])} exited {p.returncode}:\n"
                             f"{(p.stdout + p.stderr)[-3000:]}")
    return p.stdout, p.stderr


def nf4_round_trip(w):
    """w (f32, already bf16 values) quantized as one flat array (NF4, blocksize 64, double
    quantization) and dequantized, rounded to the checkpoint dtype: what fitlm computes with."""
    r = bnb.quantize_ref(w, "nf4", 64, True, NESTED_MAP)
    return bnb.dequantize_ref(r, "nf4", 64, w.numel(), DTYPE, NESTED_MAP).view(w.shape).float()


def quantized_by_fitlm(name):
    """The weights a 4-bit base keeps packed: decoder linears and a sparse layer's experts."""
    return name.startswith("model.layers.") and (
        name.endswith("_proj.weight") or name.endswith("mlp.experts.gate_up_proj")
        or name.endswith("mlp.experts.down_proj"))


def is_expert(name):
    return name.endswith("mlp.experts.gate_up_proj") or name.endswith("mlp.experts.down_proj")


def is_router(name):
    return name.endswith("mlp.gate.weight")


CASES = [
    # hidden 36: a Qwen3-MoE expert's gate_up is 40·36 = 22.5 blocks, so blocks cross experts
    # (and the per-expert source tensors' boundaries in the Hub layout).
    dict(name="qwen3moe-hub-dense-layer", layout="hub",
         cfg=dict(architectures=[moe.QWEN3_MOE], model_type="qwen3_moe", vocab_size=260,
                  hidden_size=36, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, intermediate_size=44,
                  moe_intermediate_size=20, num_experts=6, num_experts_per_tok=2,
                  norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[1],
                  router_aux_loss_coef=0.001, output_router_logits=False, attention_bias=False,
                  rms_norm_eps=1e-6, rope_theta=1000000.0, hidden_act="silu",
                  max_position_embeddings=128, tie_word_embeddings=False),
         targets="all-linear", checkpointing=True),
    dict(name="mixtral-v5-aux", layout="v5",
         cfg=dict(architectures=[moe.MIXTRAL], model_type="mixtral", vocab_size=260,
                  hidden_size=36, num_hidden_layers=2, num_attention_heads=6,
                  num_key_value_heads=2, intermediate_size=28, num_local_experts=4,
                  num_experts_per_tok=2, router_aux_loss_coef=0.02, output_router_logits=True,
                  router_jitter_noise=0.0, sliding_window=None, rms_norm_eps=1e-5,
                  rope_theta=1000000.0, hidden_act="silu", max_position_embeddings=128,
                  tie_word_embeddings=False),
         targets="[q_proj, k_proj, v_proj, o_proj]", checkpointing=False),
]


def train_yaml(base, out, adapter, data, case):
    return f"""base_model: {base}
datasets: [{{path: {data}, type: pretokenized}}]
adapter: {adapter}
lora_r: 4
lora_alpha: 8
lora_target_modules: {case['targets']}
sequence_len: 32
sample_packing: true
micro_batch_size: 4
max_steps: 12
learning_rate: 2.0e-2
warmup_steps: 2
logging_steps: 1
seed: 7
gradient_checkpointing: {'true' if case['checkpointing'] else 'false'}
output_dir: {out}
"""


def train(tmp, case, base, name, adapter, data):
    out = os.path.join(tmp, name)
    y = os.path.join(tmp, name + ".yaml")
    with open(y, "w") as f:
        f.write(train_yaml(base, out, adapter, data, case))
    log = run(["train", y])[1]
    path = os.path.join(out, "adapter_model.safetensors")
    assert os.path.exists(path), f"{name}: no adapter written"
    return out, path, log


def losses(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line)["loss"] for line in f if '"loss"' in line]


def same_bytes(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def write_model(d, cfg, weights, layout, tokenizer_dir):
    moe.write_model_dir(d, cfg, moe.to_layout(weights, cfg, layout), DTYPE)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tokenizer_dir, f), d)


def check_case(case, index, tmp, demo, failures):
    cfg, layout, name = case["cfg"], case["layout"], case["name"]
    d = os.path.join(tmp, name)
    os.makedirs(d)
    gen = torch.Generator().manual_seed(1234 + index)
    # The values stored (bf16), as f32, under the internal (v5) names.
    weights = {k: v.to(DTYPE).float() for k, v in moe.random_weights(cfg, gen).items()}
    deq = {k: nf4_round_trip(v) if quantized_by_fitlm(k) else v for k, v in weights.items()}
    experts_16 = {k: weights[k] if is_expert(k) else v for k, v in deq.items()}
    routers_4 = {k: nf4_round_trip(v) if is_router(k) else v for k, v in deq.items()}
    assert any(is_expert(k) for k in weights) and any(is_router(k) for k in weights)
    tok = os.path.join(demo, "tiny-llama-random")
    data = os.path.join(demo, "upper_train.jsonl")
    bases = {}
    for key, w in (("base", weights), ("deq", deq), ("experts16", experts_16),
                   ("routers4", routers_4)):
        bases[key] = os.path.join(d, key)
        write_model(bases[key], cfg, w, layout, tok)

    out, qlora, log = train(d, case, bases["base"], "qlora", "qlora", data)
    if "QLoRA: the base's linear weights and experts (not the routers) are nf4" not in log:
        failures.append(f"{name}: the QLoRA log line is missing:\n{log[-1500:]}")
    ls = losses(out)
    print(f"{name}: QLoRA loss {ls[0]:.4f} -> {ls[-1]:.4f} over {len(ls)} steps", flush=True)
    if not (len(ls) >= 2 and ls[-1] < 0.95 * ls[0]):
        failures.append(f"{name}: QLoRA loss {ls[:1]} -> {ls[-1:]}")
    _, on_deq, _ = train(d, case, bases["deq"], "lora-deq", "lora", data)
    if not same_bytes(qlora, on_deq):
        failures.append(f"{name}: the QLoRA adapter differs from LoRA on the dequantized base")
    # A checkpoint `fitlm quantize` wrote (attention and dense MLP 4-bit, experts left 16-bit
    # for loading to quantize) trains to the same adapter as quantizing all on load.
    q4 = os.path.join(d, "q4")
    run(["quantize", "--model", bases["base"], "--out", q4, "--double-quant"])
    _, from_q4, _ = train(d, case, q4, "qlora-q4", "qlora", data)
    if not same_bytes(qlora, from_q4):
        failures.append(f"{name}: QLoRA from the `fitlm quantize` checkpoint differs from "
                        "QLoRA quantized on load")
    for key in ("experts16", "routers4"):
        _, other, _ = train(d, case, bases[key], "lora-" + key, "lora", data)
        if same_bytes(qlora, other):
            failures.append(f"{name}: the QLoRA adapter equals LoRA on the {key} base (the test "
                            "cannot tell which weights were quantized)")
    # Merge into the 16-bit base (as PEFT merges a QLoRA adapter), then evaluate the result.
    merged = os.path.join(d, "merged")
    try:
        run(["merge", "--model", bases["base"], "--adapter", out, "--out", merged])
        ev = json.loads(run(["eval", "--json", "--model", merged, "--data", data])[0])
        if not ev["loss"] < ls[0]:
            failures.append(f"{name}: merged model's eval loss {ev['loss']} vs first {ls[0]}")
    except AssertionError as e:
        failures.append(f"{name}: merge: {str(e)[:1500]}")


def main():
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        demo = os.path.join(tmp, "demo")
        run(["-q", "demo", "--dir", demo, "--prepare-only"])
        for i, case in enumerate(CASES):
            try:
                check_case(case, i, tmp, demo, failures)
            except AssertionError as e:
                failures.append(f"{case['name']}: {e}")
            print(f"{case['name']}: checked", flush=True)
    for f in failures:
        print("FAIL", f)
    print("moe qlora train test:", "FAILED" if failures else "passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
