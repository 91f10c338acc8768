"""LoRA on a mixture of experts' routers and experts, end to end on the CPU (`fitlm train`,
`merge`, `eval`, `generate`):
  - a Qwen3-MoE (Hub per-expert tensors, a dense layer among the sparse ones) with LoRA on
    q/v, the routers and both expert tensors, and a Mixtral (fused transformers-5 experts, the
    load-balancing loss on) with QLoRA (NF4 experts) and LoRA on one expert tensor and the
    router ("gate", PEFT's module name) train and lower the loss;
  - the adapter has PEFT 0.21's names and shapes (bench/NOTES.md): the router's
    mlp.gate.lora_A [r, H] / lora_B [E, r]; the experts' lora_A [r·E, in] / lora_B [out, r·E]
    under mlp.experts, gate_up_proj's under base_layer when down_proj is targeted too; and
    adapter_config.json's target_parameters;
  - `fitlm merge` adds, to every base tensor the adapter targets (per-expert Hub tensors or fused
    ones), exactly ΔW = einsum("o r e, e r i -> e o i", B.reshape(out, r, E),
    A.reshape(E, r, in)) · α/r computed here from the saved file, and nothing to the others;
  - the merged model evaluates to the loss of the base with the adapter applied unmerged;
  - `fitlm generate --adapter` refuses such an adapter with a clear error;
  - router/experts targets on a dense model, and LoRA dropout with them, are refused.
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
import moe_reference as moe  # noqa: E402
import st  # noqa: E402

FITLM = os.environ.get("FITLM_BIN", "build/fitlm")
R, ALPHA = 4, 8


def run(args, want_rc=0):
    p = subprocess.run([FITLM] + args, capture_output=True, text=True)
    if p.returncode != want_rc:
        raise AssertionError(f"fitlm {' '.join(args[:2])} exited {p.returncode} (want {want_rc}):"
                             f"\n{(p.stdout + p.stderr)[-3000:]}")
    return p.stdout, p.stderr


COMMON = dict(vocab_size=260, hidden_size=36, num_attention_heads=4, num_key_value_heads=2,
              rms_norm_eps=1e-6, rope_theta=1000000.0, hidden_act="silu",
              max_position_embeddings=128, tie_word_embeddings=False)
CASES = [
    dict(name="qwen3moe-hub-lora", layout="hub", adapter="lora",
         cfg=dict(COMMON, architectures=[moe.QWEN3_MOE], model_type="qwen3_moe",
                  num_hidden_layers=3, head_dim=16, intermediate_size=44,
                  moe_intermediate_size=20, num_experts=6, num_experts_per_tok=2,
                  norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[1],
                  router_aux_loss_coef=0.001, output_router_logits=False,
                  attention_bias=False),
         targets="[q_proj, v_proj, router, experts]", modules=["q_proj", "v_proj"],
         moe=["router", "experts.gate_up_proj", "experts.down_proj"]),
    dict(name="mixtral-v5-qlora", layout="v5", adapter="qlora",
         cfg=dict(COMMON, architectures=[moe.MIXTRAL], model_type="mixtral", num_attention_heads=6,
                  num_hidden_layers=2, intermediate_size=28, num_local_experts=4,
                  num_experts_per_tok=2, router_aux_loss_coef=0.02, output_router_logits=True,
                  router_jitter_noise=0.0, sliding_window=None),
         targets="[gate, experts.down_proj]", modules=None,
         moe=["router", "experts.down_proj"]),
]


def train_yaml(base, out, data, adapter, targets, extra=""):
    return f"""base_model: {base}
datasets: [{{path: {data}, type: pretokenized}}]
adapter: {adapter}
lora_r: {R}
lora_alpha: {ALPHA}
lora_target_modules: {targets}
sequence_len: 32
sample_packing: true
micro_batch_size: 4
max_steps: 10
learning_rate: 2.0e-2
warmup_steps: 2
logging_steps: 1
seed: 7
output_dir: {out}
{extra}"""


def write_yaml(tmp, name, text):
    y = os.path.join(tmp, name + ".yaml")
    with open(y, "w") as f:
        f.write(text)
    return y


def losses(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line)["loss"] for line in f if '"loss"' in line]


def expected_tensors(cfg, moe_targets, modules):
    """PEFT's adapter tensor names and shapes for the case."""
    e, h = moe.num_experts(cfg), cfg["hidden_size"]
    want = {}
    for l in range(cfg["num_hidden_layers"]):
        for m in modules or []:
            out = cfg["num_key_value_heads"] * moe.ref.head_dim(cfg) if m == "v_proj" else \
                cfg["num_attention_heads"] * moe.ref.head_dim(cfg)
            name = f"base_model.model.model.layers.{l}.self_attn.{m}"
            want[name + ".lora_A.weight"] = [R, h]
            want[name + ".lora_B.weight"] = [out, R]
        if not moe.is_sparse(cfg, l):
            continue
        for t in moe_targets:
            out, inp = moe.moe_lora_dims(cfg, t)
            n = 1 if t == "router" else e
            name = moe.moe_lora_module(l, t, moe_targets)
            want[name + ".lora_A.weight"] = [R * n, inp]
            want[name + ".lora_B.weight"] = [out, R * n]
    return want


def deltas(cfg, adapter, moe_targets):
    """ΔW of every targeted router/experts tensor, under internal (v5) names, from the file."""
    scale, e = ALPHA / R, moe.num_experts(cfg)
    out = {}
    for l in moe.sparse_layers(cfg):
        gu, dn = moe.fused_names(l)
        for t in moe_targets:
            key = moe.moe_lora_module(l, t, moe_targets)
            a = adapter[key + ".lora_A.weight"].double()
            b = adapter[key + ".lora_B.weight"].double()
            if t == "router":
                out[moe.router_name(cfg, l, "v5")] = scale * (b @ a)
            else:
                out[gu if t == "experts.gate_up_proj" else dn] = moe.expert_delta(a, b, e, scale)
    return out


def check_case(case, index, tmp, demo, failures):
    cfg, layout, name = case["cfg"], case["layout"], case["name"]
    d = os.path.join(tmp, name)
    os.makedirs(d)
    gen = torch.Generator().manual_seed(77 + index)
    weights = moe.random_weights(cfg, gen)  # f32, internal names
    base = os.path.join(d, "base")
    moe.write_model_dir(base, cfg, moe.to_layout(weights, cfg, layout), torch.float32)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(demo, "tiny-llama-random", f), base)
    data = os.path.join(demo, "upper_train.jsonl")
    out = os.path.join(d, "out")
    run(["train", write_yaml(d, "train", train_yaml(base, out, data, case["adapter"],
                                                    case["targets"]))])
    ls = losses(out)
    print(f"{name}: loss {ls[0]:.4f} -> {ls[-1]:.4f} over {len(ls)} steps", flush=True)
    if not (len(ls) >= 2 and ls[-1] < 0.95 * ls[0]):
        failures.append(f"{name}: loss {ls[:1]} -> {ls[-1:]}")

    adapter = st.load(os.path.join(out, "adapter_model.safetensors"))
    want = expected_tensors(cfg, case["moe"], case["modules"])
    got = {k: list(v.shape) for k, v in adapter.items()}
    if got != want:
        failures.append(f"{name}: adapter tensors {sorted(got.items())} != {sorted(want.items())}")
        return
    with open(os.path.join(out, "adapter_config.json")) as f:
        conf = json.load(f)
    params = [moe.PEFT_PARAMETER[t] for t in moe.MOE_TARGETS if t in case["moe"]]
    if conf.get("target_parameters") != params or conf.get("target_modules") != case["modules"]:
        failures.append(f"{name}: adapter_config target_modules {conf.get('target_modules')} "
                        f"target_parameters {conf.get('target_parameters')}")
    for k, v in adapter.items():  # trained: every B moved away from its zero init
        if "lora_B" in k and float(v.abs().max()) == 0.0:
            failures.append(f"{name}: {k} is still zero after training")

    merged = os.path.join(d, "merged")
    run(["merge", "--model", base, "--adapter", out, "--out", merged, "--dtype", "f32"])
    m = moe.to_internal({k: v.double() for k, v in st.load(
        os.path.join(merged, "model.safetensors")).items()}, cfg, layout)
    dw = deltas(cfg, adapter, case["moe"])
    for k, w in weights.items():
        if ".self_attn." in k:
            continue  # q/v adapters: generate_merge_test checks those
        want_w = w.double() + dw.get(k, 0.0)
        err = float((m[k] - want_w).abs().max())
        if not err <= 1e-6 * max(1.0, float(want_w.abs().max())):
            failures.append(f"{name}: merged {k} differs from base + einsum ΔW by {err:.2e}")
    ev_merged = json.loads(run(["eval", "--json", "--model", merged, "--data", data])[0])
    ev_adapter = json.loads(run(["eval", "--json", "--model", base, "--adapter", out, "--data",
                                 data])[0])
    ev_base = json.loads(run(["eval", "--json", "--model", base, "--data", data])[0])
    if not abs(ev_merged["loss"] - ev_adapter["loss"]) <= 1e-5 * abs(ev_adapter["loss"]):
        failures.append(f"{name}: merged eval {ev_merged['loss']} vs unmerged adapter "
                        f"{ev_adapter['loss']}")
    if not ev_adapter["loss"] < ev_base["loss"]:
        failures.append(f"{name}: adapter eval {ev_adapter['loss']} not below base "
                        f"{ev_base['loss']}")
    _, err = run(["generate", "--model", base, "--adapter", out, "--prompt-ids", "1,2,3",
                  "--max-new-tokens", "2"], want_rc=2)
    if "merge the adapter into the model first" not in err or "[internal]" in err:
        failures.append(f"{name}: generate --adapter: {err.strip()[:400]}")
    run(["generate", "--model", merged, "--prompt-ids", "1,2,3", "--max-new-tokens", "2"])


def check_refusals(tmp, demo, failures):
    data = os.path.join(demo, "upper_train.jsonl")
    dense = os.path.join(demo, "tiny-llama-random")
    moe_dir = os.path.join(tmp, CASES[0]["name"], "base")
    for label, base, extra, targets, fragment in (
            ("router on a dense model", dense, "", "[q_proj, router]", "has no sparse layers"),
            ("dropout with experts", moe_dir, "lora_dropout: 0.1\n", "[q_proj, experts]",
             "LoRA dropout is not supported on the router and experts")):
        out = os.path.join(tmp, "refused")
        y = write_yaml(tmp, "refused", train_yaml(base, out, data, "lora", targets, extra))
        p = subprocess.run([FITLM, "train", y], capture_output=True, text=True)
        err = p.stdout + p.stderr
        if p.returncode != 2 or fragment not in err or "[internal]" in err:
            failures.append(f"{label}: rc={p.returncode} want '{fragment}': {err.strip()[-400:]}")


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
        check_refusals(tmp, demo, failures)
    for f in failures:
        print("FAIL", f)
    print("moe lora experts test:", "FAILED" if failures else "passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
