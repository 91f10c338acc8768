"""Parity of fitlm's CPU forward/backward on mixture-of-experts models (MixtralForCausalLM,
Qwen3MoeForCausalLM) with the float64 PyTorch reference in tests/tools/moe_reference.py.

First runs the reference's self-check (transformers is not available to compare with). Then, for
tiny random models in both on-disk layouts (hub per-expert tensors, transformers-v5 fused
experts), f32 and bf16 checkpoints, renormalised and plain top-k, dense layers among sparse ones
(mlp_only_layers, decoder_sparse_step), the router load-balancing loss, and a crafted routing
where every token picks expert 0 and the other experts get none: checks logits, loss and every
gradient (LoRA A/B; all weights in full fine-tuning, expert and router tensors under their v5
names; LoRA on the router and experts in PEFT's layout, each expert's A on its own too) within
1e-5 relative, that --recompute gives bit-identical results, and that `fitlm eval` reports the
reference cross-entropy. Last, malformed expert tensors must exit 2 naming the
tensor."""
import json
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
sys.path.insert(0, os.path.dirname(__file__))
import moe_reference as moe  # noqa: E402
import st  # noqa: E402
from hf_parity_test import make_rows, rel_err, run  # noqa: E402

FITLM = os.environ.get("FITLM_BIN", "build/fitlm")
TOL = 1e-5
# The reference's routing must be at least this far (in router-logit units) from a tie in every
# sparse layer, token and mode, so that fitlm's f32 arithmetic picks the same experts.
MIN_MARGIN = 1e-3
ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
ALL = ATTN + ["gate_proj", "up_proj", "down_proj"]


def common_cfg(arch, **kw):
    cfg = {"architectures": [arch], "vocab_size": 101, "hidden_size": 32,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "hidden_act": "silu",
           "max_position_embeddings": 128, "tie_word_embeddings": False}
    cfg.update(kw)
    return cfg


def mixtral_cfg(**kw):
    c = common_cfg(moe.MIXTRAL, model_type="mixtral", intermediate_size=40, num_local_experts=4,
                   num_experts_per_tok=2, router_aux_loss_coef=0.02, output_router_logits=False,
                   router_jitter_noise=0.0, sliding_window=None, rope_theta=1000000.0)
    c.update(kw)
    return c


def qwen3_moe_cfg(**kw):
    c = common_cfg(moe.QWEN3_MOE, model_type="qwen3_moe", intermediate_size=48,
                   moe_intermediate_size=24, num_experts=8, num_experts_per_tok=2, head_dim=16,
                   norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[],
                   router_aux_loss_coef=0.001, output_router_logits=False, attention_bias=False,
                   rope_theta=1000000.0)
    c.update(kw)
    return c


def route_all_to_expert0(weights, cfg, gen):
    """Every token embedding gets a large value in hidden dimension 0; each sparse layer's router
    row 0 is a large multiple of e_0, row E-1 a large negative one, the others small random. The
    margin stays moderate (p_0 well below 1) so that the router's gradient is well conditioned."""
    weights["model.embed_tokens.weight"][:, 0] += 4.0
    for l in moe.sparse_layers(cfg):
        r = 0.02 * torch.randn(moe.num_experts(cfg), cfg["hidden_size"], generator=gen)
        r[0, 0] += 0.8
        r[-1, 0] -= 0.8
        weights[moe.router_name(cfg, l, "v5")] = r


def expect_all_to_expert0(cfg, router_logits):
    """Asserts (in the reference) the crafted routing: top-1 is expert 0 for every token of every
    sparse layer, so the last expert (and every other) gets no token."""
    for l, lg in zip(moe.sparse_layers(cfg), router_logits):
        idx = torch.topk(torch.softmax(lg, -1), moe.top_k(cfg), dim=-1).indices
        assert bool((idx == 0).all()), f"crafted routing: layer {l} routes {idx.flatten().tolist()}"
        assert not bool((idx == moe.num_experts(cfg) - 1).any())
        p0 = torch.softmax(lg, -1)[:, 0]
        assert float(p0.max()) < 0.999, f"crafted routing saturates (p0 {float(p0.max())})"


CASES = [
    dict(name="mixtral-hub-f32-top2of4", layout="hub", dtype=torch.float32, chunk=1024,
         cfg=mixtral_cfg(), targets=ATTN, r=4, alpha=8, rslora=False),
    dict(name="mixtral-v5-bf16-top2of8-aux", layout="v5", dtype=torch.bfloat16, chunk=5,
         cfg=mixtral_cfg(num_local_experts=8, output_router_logits=True,
                         router_aux_loss_coef=0.02),
         targets=ATTN, r=3, alpha=16, rslora=True),
    dict(name="qwen3moe-hub-mlp-only-layer-norm-topk", layout="hub", dtype=torch.float32,
         chunk=7, cfg=qwen3_moe_cfg(num_hidden_layers=3, mlp_only_layers=[1],
                                    norm_topk_prob=True, num_key_value_heads=1),
         targets=ALL, r=4, alpha=8, rslora=False),
    dict(name="qwen3moe-v5-sparse-step2-aux", layout="v5", dtype=torch.float32, chunk=1024,
         cfg=qwen3_moe_cfg(decoder_sparse_step=2, norm_topk_prob=False,
                           output_router_logits=True, router_aux_loss_coef=0.001),
         targets=ALL, r=2, alpha=4, rslora=False),
    dict(name="qwen3moe-hub-top1-all-to-expert0", layout="hub", dtype=torch.float32, chunk=1024,
         cfg=qwen3_moe_cfg(num_experts=4, num_experts_per_tok=1, norm_topk_prob=False,
                           output_router_logits=True, router_aux_loss_coef=0.01),
         targets=ATTN, r=4, alpha=8, rslora=False, craft=route_all_to_expert0,
         check_routing=expect_all_to_expert0),
    # LoRA on the router and experts (PEFT's parameter targets): both expert tensors (PEFT nests
    # gate_up_proj's names under base_layer), one of them alone (no nesting), the router alone
    # and with a dense layer among the sparse ones.
    dict(name="mixtral-v5-lora-router-experts", layout="v5", dtype=torch.float32, chunk=1024,
         cfg=mixtral_cfg(output_router_logits=True, router_aux_loss_coef=0.02), targets=ATTN,
         moe=["router", "experts.gate_up_proj", "experts.down_proj"], r=2, alpha=4,
         rslora=False),
    dict(name="mixtral-hub-lora-experts-only", layout="hub", dtype=torch.bfloat16, chunk=5,
         cfg=mixtral_cfg(num_local_experts=8), targets=[],
         moe=["experts.gate_up_proj", "experts.down_proj"], r=3, alpha=16, rslora=True),
    dict(name="qwen3moe-hub-lora-router-gate-up-dense-layer", layout="hub", dtype=torch.float32,
         chunk=7, cfg=qwen3_moe_cfg(num_hidden_layers=3, mlp_only_layers=[1],
                                    norm_topk_prob=True, num_key_value_heads=1),
         targets=ALL, moe=["router", "experts.gate_up_proj"], r=4, alpha=8, rslora=False),
    dict(name="qwen3moe-v5-lora-down-aux", layout="v5", dtype=torch.float32, chunk=1024,
         cfg=qwen3_moe_cfg(decoder_sparse_step=2, output_router_logits=True,
                           router_aux_loss_coef=0.001),
         targets=["q_proj", "v_proj"], moe=["experts.down_proj"], r=2, alpha=4, rslora=False),
    dict(name="qwen3moe-v5-lora-router-only", layout="v5", dtype=torch.float32, chunk=1024,
         cfg=qwen3_moe_cfg(num_experts=4, norm_topk_prob=True), targets=[], moe=["router"],
         r=2, alpha=4, rslora=False),
]


def lora_scale(case):
    return case["alpha"] / (case["r"] ** 0.5 if case["rslora"] else case["r"])


def reference(case, weights, rows, adapter, grad=True):
    """weights: internal-named f32 tensors (already rounded to the checkpoint dtype). Returns
    (logits [T, V], loss = CE mean (+ coef * aux), CE mean, grads, router logits, margin); grads
    are named as fitlm's dump names them (LoRA tensors; or internal names in full mode)."""
    cfg, layout = case["cfg"], case["layout"]
    m = moe.MoEReference(cfg, layout)
    full = adapter is None
    params = {k: v.double().requires_grad_(full and grad)
              for k, v in moe.to_layout(weights, cfg, layout).items()}
    lora = None
    if not full:
        lora = ({k: v.double().requires_grad_(grad) for k, v in adapter.items()}, lora_scale(case))
    logits, router, total, count = [], [], 0, 0
    for row in rows:
        lg = m.forward(row["input_ids"], params, lora)
        s, n = m.loss_sum(lg, row["labels"])
        logits.append(lg)
        router += m.router_logits
        total, count = total + s, count + n
    ce = total / count
    loss = ce
    if cfg.get("output_router_logits", False):
        loss = ce + cfg["router_aux_loss_coef"] * moe.load_balancing_loss(router, m.e, m.k)
    grads = None
    if grad:
        loss.backward()
        if full:
            grads = moe.to_internal({k: v.grad for k, v in params.items()}, cfg, layout)
        else:
            grads = {k: v.grad for k, v in lora[0].items()}
    return (torch.cat(logits).detach(), float(loss), float(ce), grads,
            [r.detach() for r in router], moe.topk_margin(router, m.k))


def build(case, index, d):
    """Writes the model, adapter and rows of a case; the first seed whose routing is clear of
    ties (MIN_MARGIN) in both modes is used (deterministic: always the same one)."""
    cfg = case["cfg"]
    for attempt in range(100):
        gen = torch.Generator().manual_seed(4321 + 100 * index + attempt)
        weights = moe.random_weights(cfg, gen)
        if "craft" in case:
            case["craft"](weights, cfg, gen)
        # The reference sees exactly the values stored (bf16-rounded for the bf16 case).
        weights = {k: v.to(case["dtype"]).float() for k, v in weights.items()}
        adapter = moe.random_adapter(cfg, case["targets"], case["r"], gen, case.get("moe", ()))
        rows = make_rows(gen, cfg["vocab_size"])
        margins = [reference(case, weights, rows, a, grad=False)[5] for a in (None, adapter)]
        if min(margins) >= MIN_MARGIN:
            break
    else:
        raise AssertionError(f"{case['name']}: no seed gives routing clear of ties")
    moe.write_model_dir(d + "/model", cfg, moe.to_layout(weights, cfg, case["layout"]),
                        case["dtype"])
    moe.write_adapter_dir(d + "/adapter", case["targets"], case["r"], case["alpha"],
                          case["rslora"], adapter, case.get("moe", ()))
    with open(d + "/rows.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return weights, adapter, rows


def expert_tensor(name):
    return name.endswith("mlp.experts.gate_up_proj") or name.endswith("mlp.experts.down_proj")


def expert_lora_a(name):
    return ".mlp.experts." in name and name.endswith("lora_A.weight")


def check_dump(dump, logits, loss, grads, failures, label, experts):
    e = rel_err(dump["logits"], logits)
    if not e <= TOL:  # (not <=: a NaN fails too)
        failures.append(f"{label}: logits rel err {e:.2e}")
    got_loss = float(dump["loss_and_tokens"][0])
    if not abs(got_loss - loss) <= TOL * abs(loss):
        failures.append(f"{label}: loss {got_loss} vs reference {loss}")
    for name, g in grads.items():
        key = "grad." + name
        if key not in dump:
            failures.append(f"{label}: fitlm wrote no gradient for {name}")
            continue
        if tuple(dump[key].shape) != tuple(g.shape):
            failures.append(f"{label}: grad {name} shape {list(dump[key].shape)} "
                            f"vs {list(g.shape)}")
            continue
        e = rel_err(dump[key], g)
        if not e <= TOL:
            failures.append(f"{label}: grad {name} rel err {e:.2e}")
        if expert_lora_a(name):
            # Each expert's A_e (rows e·r .. e·r + r − 1) on its own, as for the base experts.
            r = g.shape[0] // experts
            for j in range(experts):
                err = rel_err(dump[key][j * r:(j + 1) * r], g[j * r:(j + 1) * r])
                if not err <= TOL:
                    failures.append(f"{label}: grad {name} expert {j} rel err {err:.2e}")
        if expert_tensor(name):
            # Each expert on its own (a small expert's error could hide in the whole); an expert
            # no token reached must get exactly zero.
            for j in range(g.shape[0]):
                e = rel_err(dump[key][j], g[j])
                if not e <= TOL:
                    why = " (expert got no token: want 0)" if g[j].norm() == 0 else ""
                    failures.append(f"{label}: grad {name}[{j}] rel err {e:.2e}{why}")
    extra = [k for k in dump if k.startswith("grad.") and k[5:] not in grads]
    if extra:
        failures.append(f"{label}: unexpected gradients {extra[:3]}")


def check_case(case, index, tmp, failures):
    cfg = case["cfg"]
    d = os.path.join(tmp, case["name"])
    weights, adapter, rows = build(case, index, d)
    common = ["--model", d + "/model", "--data", d + "/rows.jsonl",
              "--logits-chunk", str(case["chunk"])]
    for mode in ("lora", "full"):
        adapter_args = ["--adapter", d + "/adapter"] if mode == "lora" else []
        logits, loss, ce, grads, router, _ = reference(case, weights, rows,
                                                       adapter if mode == "lora" else None)
        if "check_routing" in case:
            case["check_routing"](cfg, router)
        if mode == "full":
            want = {"grad." + k for k in weights}
            assert want == {"grad." + k for k in grads}, "reference misses a gradient"
        outs = {}
        for recompute in (False, True):
            out = f"{d}/dump-{mode}-{recompute}.safetensors"
            label = f"{case['name']} {mode} recompute={recompute}"
            try:
                run(["dump", "--mode", mode, "--out", out] + common + adapter_args +
                    (["--recompute"] if recompute else []))
            except AssertionError as e:
                failures.append(f"{label}: {str(e)[:600]}")
                continue
            outs[recompute] = st.load(out)
            check_dump(outs[recompute], logits, loss, grads, failures, label,
                       moe.num_experts(cfg))
        if len(outs) == 2:
            for k in outs[False]:
                if k not in outs[True] or not torch.equal(outs[False][k], outs[True][k]):
                    failures.append(f"{case['name']} {mode}: recompute changed {k}")
        # fitlm eval reports the cross-entropy alone (no aux term).
        try:
            ev = json.loads(run(["eval", "--json", "--model", d + "/model", "--data",
                                 d + "/rows.jsonl"] + adapter_args))
        except AssertionError as e:
            failures.append(f"{case['name']} eval {mode}: {str(e)[:600]}")
            continue
        if not abs(ev["loss"] - ce) <= TOL * abs(ce):
            failures.append(f"{case['name']} eval {mode}: {ev['loss']} vs {ce}")
        expected_tokens = sum(sum(1 for x in r["labels"][1:] if x != -100) for r in rows)
        if ev["tokens"] != expected_tokens:
            failures.append(f"{case['name']} eval {mode}: tokens {ev['tokens']}")


def check_bad_inputs(tmp, failures):
    """Malformed expert tensors: `fitlm eval` exits 2 with a short message naming the tensor."""
    cfg = mixtral_cfg()
    weights = moe.random_weights(cfg, torch.Generator().manual_seed(99))
    hub = moe.to_layout(weights, cfg, "hub")
    data = os.path.join(tmp, "bad-rows.jsonl")
    with open(data, "w") as f:
        f.write(json.dumps({"input_ids": [1, 2, 3, 4]}) + "\n")
    i, h = cfg["intermediate_size"], cfg["hidden_size"]
    w1 = "model.layers.0.block_sparse_moe.experts.1.w1.weight"
    w3 = "model.layers.1.block_sparse_moe.experts.2.w3.weight"
    down = "model.layers.1.mlp.experts.down_proj"
    wrong_hub = dict(hub)
    wrong_hub[w1] = torch.randn(i + 1, h)
    missing_hub = {k: v for k, v in hub.items() if k != w3}
    wrong_v5 = dict(weights)
    wrong_v5[down] = torch.randn(moe.num_experts(cfg), h, i - 1)
    e = moe.num_experts(cfg)
    expectations = [
        ("expert-wrong-shape-hub", wrong_hub,
         [f"tensor '{w1}' has shape [{i + 1}, {h}]", f"config.json implies [{i}, {h}]"]),
        ("expert-missing-hub", missing_hub, [f"tensor '{w3}' is missing from the checkpoint"]),
        ("expert-wrong-shape-v5", wrong_v5,
         [f"tensor '{down}' has shape [{e}, {h}, {i - 1}]",
          f"config.json implies [{e}, {h}, {i}]"]),
    ]
    for name, w, fragments in expectations:
        d = os.path.join(tmp, name)
        moe.write_model_dir(d, cfg, w)
        p = subprocess.run([FITLM, "eval", "--model", d, "--data", data],
                           capture_output=True, text=True)
        err = p.stdout + p.stderr
        if (p.returncode != 2 or any(f not in err for f in fragments) or "[internal]" in err
                or len(err) > 2000):
            failures.append(f"bad-input {name}: rc={p.returncode} want {fragments}; "
                            f"output: {err.strip()[:400]}")


def main():
    failures = moe.self_check()
    for f in failures:
        print("FAIL reference self-check:", f)
    print("reference self-check:", "FAILED" if failures else "ok", flush=True)
    failures = [f"self-check: {f}" for f in failures]
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(CASES):
            try:
                check_case(case, i, tmp, failures)
            except AssertionError as e:
                failures.append(f"{case['name']}: {e}")
            print(f"{case['name']}: checked", flush=True)
        check_bad_inputs(tmp, failures)
        print("bad-input: checked", flush=True)
    for f in failures:
        print("FAIL", f)
    names = [c["name"] for c in CASES] + ["bad-input", "self-check"]
    failed = {n for n in names for f in failures if f.split(" ")[0].rstrip(":") == n}
    print(f"{len(names) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
