"""Parity of fitlm's CPU forward/backward with a float64 PyTorch reference of the HF models.

For tiny random configs of each supported architecture (GQA, tied/untied embeddings, qkv bias,
Qwen3 q/k norm, llama3 rope scaling, explicit head_dim, bf16 checkpoint), checks logits, loss and
every gradient (LoRA A/B; all weights in full fine-tuning) within 1e-5 relative, that activation
recompute gives bit-identical gradients, and that `fitlm eval` reports the reference loss."""
import json
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
import hf_reference as ref  # noqa: E402
import st  # noqa: E402

FITLM = os.environ.get("FITLM_BIN", "build/fitlm")
TOL = 1e-5


def base_cfg(arch, **kw):
    cfg = {"architectures": [arch], "vocab_size": 101, "hidden_size": 32,
           "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
           "hidden_act": "silu", "max_position_embeddings": 128, "tie_word_embeddings": False}
    cfg.update(kw)
    return cfg


CASES = [
    dict(name="llama3.1-gqa-llama3-rope", dtype=torch.float32, chunk=1024,
         cfg=base_cfg("LlamaForCausalLM", rope_theta=500000.0,
                      rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 16, "rope_type": "llama3"}),
         targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
         r=4, alpha=8, rslora=False),
    dict(name="llama-tied-bias-bf16-mha", dtype=torch.bfloat16, chunk=5,
         cfg=base_cfg("LlamaForCausalLM", num_key_value_heads=4, tie_word_embeddings=True,
                      attention_bias=True, mlp_bias=True),
         targets=["q_proj", "v_proj"], r=3, alpha=16, rslora=True),
    dict(name="mistral-explicit-head-dim", dtype=torch.float32, chunk=7,
         cfg=base_cfg("MistralForCausalLM", head_dim=12, sliding_window=4096),
         targets=["k_proj", "o_proj", "down_proj"], r=2, alpha=4, rslora=False),
    dict(name="qwen2-qkv-bias-tied", dtype=torch.float32, chunk=1024,
         cfg=base_cfg("Qwen2ForCausalLM", tie_word_embeddings=True, rope_theta=1000000.0),
         targets=["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"], r=4, alpha=4,
         rslora=False),
    dict(name="qwen3-qk-norm", dtype=torch.float32, chunk=1024,
         cfg=base_cfg("Qwen3ForCausalLM", head_dim=16, num_attention_heads=4,
                      num_key_value_heads=1, attention_bias=False),
         targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
         r=4, alpha=8, rslora=False),
]


def rel_err(a, b):
    a, b = a.double().flatten(), b.double().flatten()
    return float((a - b).norm() / max(b.norm(), 1e-30))


def run(args):
    p = subprocess.run([FITLM] + args, capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(f"fitlm {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return p.stdout


def make_rows(gen, vocab):
    rows = []
    for n in (9, 14, 6):
        ids = torch.randint(0, vocab, (n,), generator=gen).tolist()
        labels = list(ids)
        labels[0] = -100
        labels[2] = -100  # a prompt-like gap in the scored tokens
        rows.append({"input_ids": ids, "labels": labels})
    return rows


def reference(case, weights, rows, adapter):
    """Returns (logits [T, V], mean loss, grads dict) of the float64 reference."""
    m = ref.Reference(case["cfg"])
    params = {k: v.double().requires_grad_(adapter is None) for k, v in weights.items()}
    lora = None
    if adapter is not None:
        scale = case["alpha"] / (case["r"] ** 0.5 if case["rslora"] else case["r"])
        lora = ({k: v.double().requires_grad_(True) for k, v in adapter.items()}, scale)
    logits, total, count = [], 0, 0
    for row in rows:
        lg = m.forward(row["input_ids"], params, lora)
        s, n = m.loss_sum(lg, row["labels"])
        logits.append(lg)
        total, count = total + s, count + n
    loss = total / count
    loss.backward()
    leaves = lora[0] if lora else params
    grads = {k: v.grad for k, v in leaves.items()}
    return torch.cat(logits).detach(), float(loss), grads


def check_dump(case, dump, logits, loss, grads, failures, label):
    e = rel_err(dump["logits"], logits)
    if e > TOL:
        failures.append(f"{label}: logits rel err {e:.2e}")
    got_loss = float(dump["loss_and_tokens"][0])
    if abs(got_loss - loss) > TOL * abs(loss):
        failures.append(f"{label}: loss {got_loss} vs reference {loss}")
    for name, g in grads.items():
        key = "grad." + name
        if key not in dump:
            failures.append(f"{label}: fitlm wrote no gradient for {name}")
            continue
        e = rel_err(dump[key], g)
        if e > TOL:
            failures.append(f"{label}: grad {name} rel err {e:.2e}")
    extra = [k for k in dump if k.startswith("grad.") and k[5:] not in grads]
    if extra:
        failures.append(f"{label}: unexpected gradients {extra[:3]}")


def main():
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(CASES):
            gen = torch.Generator().manual_seed(1234 + i)
            d = os.path.join(tmp, case["name"])
            weights = ref.random_weights(case["cfg"], gen)
            ref.write_model_dir(d + "/model", case["cfg"], weights, case["dtype"])
            # The reference sees exactly the values stored (bf16-rounded for the bf16 case).
            weights = {k: v.to(case["dtype"]).float() for k, v in weights.items()}
            adapter = ref.random_adapter(case["cfg"], case["targets"], case["r"], gen)
            ref.write_adapter_dir(d + "/adapter", case["targets"], case["r"], case["alpha"],
                                  case["rslora"], adapter)
            rows = make_rows(gen, case["cfg"]["vocab_size"])
            with open(d + "/rows.jsonl", "w") as f:
                for r in rows:
                    f.write(json.dumps(r) + "\n")
            common = ["--model", d + "/model", "--data", d + "/rows.jsonl",
                      "--logits-chunk", str(case["chunk"])]

            for mode in ("lora", "full"):
                adapter_args = ["--adapter", d + "/adapter"] if mode == "lora" else []
                logits, loss, grads = reference(case, weights, rows,
                                                adapter if mode == "lora" else None)
                outs = {}
                for recompute in (False, True):
                    out = f"{d}/dump-{mode}-{recompute}.safetensors"
                    run(["dump", "--mode", mode, "--out", out] + common + adapter_args +
                        (["--recompute"] if recompute else []))
                    outs[recompute] = st.load(out)
                    check_dump(case, outs[recompute], logits, loss, grads, failures,
                               f"{case['name']} {mode} recompute={recompute}")
                for k in outs[False]:
                    if not torch.equal(outs[False][k], outs[True][k]):
                        failures.append(f"{case['name']} {mode}: recompute changed {k}")
                # fitlm eval reports the same loss.
                ev = json.loads(run(["eval", "--json", "--model", d + "/model", "--data",
                                     d + "/rows.jsonl"] + adapter_args))
                if abs(ev["loss"] - loss) > TOL * abs(loss):
                    failures.append(f"{case['name']} eval {mode}: {ev['loss']} vs {loss}")
                expected_tokens = sum(sum(1 for x in r["labels"][1:] if x != -100) for r in rows)
                if ev["tokens"] != expected_tokens:
                    failures.append(f"{case['name']} eval tokens {ev['tokens']}")
            print(f"{case['name']}: checked", flush=True)
    for f in failures:
        print("FAIL", f)
    failed = {f.split(":")[0].split(" ")[0] for f in failures}
    print(f"{len(CASES) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
