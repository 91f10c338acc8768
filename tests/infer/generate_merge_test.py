"""`fitlm generate` and `fitlm merge` on random HF model directories against the float64 PyTorch
reference: greedy tokens are the reference argmax step by step (base + adapter, Llama GQA and
Qwen3); the merged model's weights give the base+adapter logits (1e-5); a sharded merge has an
index and every shard readable; the merged model generates and scores as base+adapter does;
--dtype bf16 is honoured; an ensemble of one adapter twice generates as the adapter alone."""
import glob
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
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROMPT = [3, 17, 42, 5]
NEW = 8


def cfg_of(arch, **kw):
    cfg = {"architectures": [arch], "vocab_size": 97, "hidden_size": 32, "intermediate_size": 48,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "hidden_act": "silu",
           "max_position_embeddings": 128, "tie_word_embeddings": False,
           "torch_dtype": "float32"}
    cfg.update(kw)
    return cfg


def run(*args):
    p = subprocess.run([FITLM, *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(f"fitlm {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return p.stdout


def generate(model, *extra):
    out = run("generate", "--model", model, "--prompt-ids", ",".join(map(str, PROMPT)),
              "--max-new-tokens", str(NEW), "--json", *extra)
    return json.loads(out.splitlines()[0])["tokens"]


def reference_greedy(r, params, lora):
    seq = list(PROMPT)
    for _ in range(NEW):
        seq.append(int(r.forward(seq, params, lora)[-1].argmax()))
    return seq[len(PROMPT):]


def load_dir(path):
    index = os.path.join(path, "model.safetensors.index.json")
    out = {}
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    for f in files:
        out.update(st.load(os.path.join(path, f)))
    return out


def check(tmp, name, cfg, failures):
    gen = torch.Generator().manual_seed(11)
    weights = ref.random_weights(cfg, gen)
    adapter = ref.random_adapter(cfg, ALL, 4, gen)
    model, adir = os.path.join(tmp, name), os.path.join(tmp, name + "-lora")
    ref.write_model_dir(model, cfg, weights)
    ref.write_adapter_dir(adir, ALL, 4, 8, False, adapter)
    params = {k: v.double() for k, v in weights.items()}
    lora = ({k: v.double() for k, v in adapter.items()}, 8 / 4)
    r = ref.Reference(cfg)

    want = reference_greedy(r, params, lora)
    got = generate(model, "--adapter", adir)
    if got != want:
        failures.append(f"{name}: greedy {got} != reference {want}")
    if generate(model, "--adapter", adir, "--adapter", adir, "--ensemble") != got:
        failures.append(f"{name}: ensemble of the adapter twice differs from the adapter")

    merged = os.path.join(tmp, name + "-merged")
    run("merge", "--model", model, "--adapter", adir, "--out", merged, "--max-shard-size", "20KB")
    index = os.path.join(merged, "model.safetensors.index.json")
    shards = glob.glob(os.path.join(merged, "model-*-of-*.safetensors"))
    if not os.path.exists(index) or len(shards) < 2:
        failures.append(f"{name}: sharded merge wrote {len(shards)} shards, index {os.path.exists(index)}")
    mw = {k: v.double() for k, v in load_dir(merged).items()}
    if set(mw) != set(params):
        failures.append(f"{name}: merged tensors {sorted(set(mw) ^ set(params))} differ")
    a = r.forward(PROMPT + want, mw)
    b = r.forward(PROMPT + want, params, lora)
    err = float((a - b).norm() / b.norm())
    if err > 1e-5:
        failures.append(f"{name}: merged logits rel err {err:.3g}")
    if generate(merged) != want:
        failures.append(f"{name}: merged model generates differently")
    # fitlm eval loss: merged vs base + adapter.
    data = os.path.join(tmp, name + "-data.jsonl")
    with open(data, "w") as f:
        f.write(json.dumps({"input_ids": PROMPT + want}) + "\n")
    l1 = json.loads(run("eval", "--model", merged, "--data", data, "--json"))["loss"]
    l2 = json.loads(run("eval", "--model", model, "--adapter", adir, "--data", data, "--json"))["loss"]
    if abs(l1 - l2) > 1e-5 * max(1.0, abs(l2)):
        failures.append(f"{name}: eval loss merged {l1} vs base+adapter {l2}")

    bf = os.path.join(tmp, name + "-bf16")
    run("merge", "--model", model, "--adapter", adir, "--out", bf, "--dtype", "bf16")
    with open(os.path.join(bf, "config.json")) as f:
        if json.load(f).get("torch_dtype") != "bfloat16":
            failures.append(f"{name}: bf16 merge config torch_dtype not bfloat16")
    bw = load_dir(bf)
    if any(t.dtype != torch.bfloat16 for t in bw.values()):
        failures.append(f"{name}: bf16 merge stored other dtypes")
    print(f"{name}: greedy {got}, merged rel err {err:.2e}, eval {l1:.6f}/{l2:.6f}")


def main():
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        check(tmp, "llama-gqa", cfg_of("LlamaForCausalLM"), failures)
        check(tmp, "qwen3", cfg_of("Qwen3ForCausalLM", head_dim=16, num_key_value_heads=1,
                                   attention_bias=False), failures)
    for f in failures:
        print("FAIL", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
