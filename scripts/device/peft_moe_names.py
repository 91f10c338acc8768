"""Issue 14: which names and layouts PEFT 0.21 (with transformers 5.17) uses for LoRA on a
Qwen3-MoE / Mixtral model's fused experts and router. Builds tiny random models, applies LoRA
to attention, router and experts, saves the adapter and prints its tensor names, shapes and
adapter_config.json, PEFT's delta-weight code for parameter targets, and whether merging the
adapter equals a per-expert ΔW formula.
  /opt/torch/.venv/bin/python3 scripts/device/peft_moe_names.py"""
import inspect
import json
import os
import tempfile

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file

print("transformers", transformers.__version__, "peft", peft.__version__, "torch", torch.__version__)
torch.manual_seed(0)


def tiny(kind):
    if kind == "qwen3_moe":
        cfg = transformers.Qwen3MoeConfig(vocab_size=64, hidden_size=16, intermediate_size=24,
                                          num_hidden_layers=1, num_attention_heads=2,
                                          num_key_value_heads=1, head_dim=8, num_experts=4,
                                          num_experts_per_tok=2, moe_intermediate_size=12)
        return transformers.Qwen3MoeForCausalLM(cfg)
    cfg = transformers.MixtralConfig(vocab_size=64, hidden_size=16, intermediate_size=12,
                                     num_hidden_layers=1, num_attention_heads=2,
                                     num_key_value_heads=1, head_dim=8, num_local_experts=4,
                                     num_experts_per_tok=2)
    return transformers.MixtralForCausalLM(cfg)


for kind in ("qwen3_moe", "mixtral"):
    model = tiny(kind).float()
    print(f"== {kind}: parameters of layer 0's mlp")
    for n, p in model.named_parameters():
        if ".mlp." in n:
            print(" ", n, tuple(p.shape))
    print("  mlp modules:", [f"{n}:{type(m).__name__}" for n, m in model.named_modules()
                             if n.startswith("model.layers.0.mlp")])
    tries = {
        "router as module": dict(target_modules=["q_proj", "gate"]),
        "experts as parameters": dict(target_modules=["q_proj"],
                                      target_parameters=["mlp.experts.gate_up_proj",
                                                         "mlp.experts.down_proj"]),
        "router as parameter": dict(target_modules=["q_proj"],
                                    target_parameters=["mlp.gate.weight"]),
    }
    for label, kw in tries.items():
        m = tiny(kind).float()
        try:
            pm = get_peft_model(m, LoraConfig(r=2, lora_alpha=4, init_lora_weights=False, **kw))
        except Exception as e:  # noqa: BLE001 — we want to know what fails
            print(f"  [{label}] get_peft_model failed: {type(e).__name__}: {e}")
            continue
        with tempfile.TemporaryDirectory() as d:
            pm.save_pretrained(d)
            sd = load_file(os.path.join(d, "adapter_model.safetensors"))
            conf = json.load(open(os.path.join(d, "adapter_config.json")))
        print(f"  [{label}] saved tensors:")
        for n, t in sorted(sd.items()):
            print("     ", n, tuple(t.shape))
        print(f"  [{label}] config target_modules={conf.get('target_modules')} "
              f"target_parameters={conf.get('target_parameters')}")
        if "target_parameters" in kw and "experts" in label:
            before = {n: p.detach().clone() for n, p in m.named_parameters()}
            x = torch.randn(1, 5, 16)
            with torch.no_grad():
                y_adapted = pm(inputs_embeds=x).logits
            merged = pm.merge_and_unload()
            with torch.no_grad():
                y_merged = merged(inputs_embeds=x).logits
            print(f"  [{label}] merged logits max diff {float((y_adapted - y_merged).abs().max()):.3g}")
            for n, p in merged.named_parameters():
                key = n if n in before else None
                if key and "experts" in n:
                    delta = p.detach() - before[key]
                    print(f"    ΔW {n} {tuple(delta.shape)} norm {float(delta.norm()):.4g}")
                    # candidates: lora_B @ lora_A per expert chunk
                    stem = "base_model.model." + n.rsplit(".", 1)[0]
                    a = [t for k2, t in sd.items() if k2.startswith(stem) and "lora_A" in k2 and n.rsplit('.', 1)[1] in k2]
                    b = [t for k2, t in sd.items() if k2.startswith(stem) and "lora_B" in k2 and n.rsplit('.', 1)[1] in k2]
                    print(f"      lora_A {[tuple(t.shape) for t in a]} lora_B {[tuple(t.shape) for t in b]}")
                    if a and b:
                        A, B = a[0], b[0]
                        E = delta.shape[0]
                        scale = conf["lora_alpha"] / conf["r"]
                        for name, f in {
                            "A[e*r:(e+1)*r], B[:, e*r:(e+1)*r], ΔW[e] = (B_e A_e)": lambda e: (B[:, e * 2:(e + 1) * 2] @ A[e * 2:(e + 1) * 2]),
                            "ΔW[e] = (B_e A_e)ᵀ": lambda e: (B[:, e * 2:(e + 1) * 2] @ A[e * 2:(e + 1) * 2]).T,
                            "A [E*r, in] B [out, E*r] transposed roles": lambda e: (A[e * 2:(e + 1) * 2].T @ B[:, e * 2:(e + 1) * 2].T),
                        }.items():
                            try:
                                cand = torch.stack([f(e) for e in range(E)]) * scale
                                print(f"      {name}: max |diff| {float((cand - delta).abs().max()):.3g}")
                            except Exception as e:  # noqa: BLE001
                                print(f"      {name}: {type(e).__name__}: {e}")
print("== PEFT ParamWrapper source (get_delta_weight, forward hooks)")
pw = getattr(peft.tuners.lora.layer, "ParamWrapper", None)
if pw is None:
    print("no ParamWrapper in this PEFT")
else:
    for meth in ("update_layer", "get_delta_weight", "_activate_lora", "forward"):
        f = getattr(pw, meth, None)
        if f is not None:
            print(f"--- {meth}")
            print(inspect.getsource(f)[:3000])
