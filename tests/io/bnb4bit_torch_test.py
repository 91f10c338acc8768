"""bitsandbytes 4-bit checkpoints: `fitlm quantize` against a PyTorch reference of the
bitsandbytes rules (FORMATS.md §7, written here from the rules, independent of fitlm's C++),
and loading a 4-bit checkpoint against the float64 reference model on the dequantized weights.

For a tiny random Llama whose linear weights have odd element counts (45×33, 33×45: not
multiples of any blocksize, odd n), for NF4 and FP4, with and without double
quantization, blocksizes 32, 64 and 256:
  - packed bytes, f32 absmax, 8-bit absmax codes, nested absmax and offset bit-identical;
  - quant_map, quant_state JSON (byte for byte, as json.dumps writes it) and
    config.json's quantization_config as transformers writes them;
  - `fitlm eval` and `fitlm dump --mode lora` on the 4-bit model equal the float64 reference on
    the dequantized (bf16-rounded) weights: loss and LoRA gradients to 1e-5.
"""
import json
import math
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

NF4 = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0], dtype=torch.float32)
_FP4_MAG = torch.tensor([0.0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0], dtype=torch.float32) / 12.0
FP4 = torch.cat([_FP4_MAG, -_FP4_MAG])


def bnb_dynamic_map():
    """bitsandbytes create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)."""
    data = []
    for i in range(7):
        b = torch.linspace(0.1, 1, 2 ** i + 1, dtype=torch.float32)
        means = (b[:-1] + b[1:]) / 2.0
        data += ((10 ** (-6 + i)) * means).tolist()
        data += (-(10 ** (-6 + i)) * means).tolist()
    data += [0, 1.0]
    return torch.tensor(sorted(data), dtype=torch.float32)


def nearest(sorted_vals, x):
    """Index of the nearest value, ties to the lower: the count of midpoints x exceeds (the
    strict ">" trees of bitsandbytes' CUDA kernels); NaN exceeds none."""
    mids = ((sorted_vals[:-1].double() + sorted_vals[1:].double()) / 2).float()
    return (x.unsqueeze(-1) > mids).sum(-1)


def code4(qt, scaled):
    if qt == "nf4":
        return nearest(NF4, scaled)
    order = torch.argsort(_FP4_MAG)
    mag = nearest(_FP4_MAG[order], scaled.abs())
    return order[mag] | torch.where(scaled < 0, 8, 0)


def blockwise_scale(x, bs):
    """absmax per block (f32) and clamp(x · (1/absmax), −1, 1) in f32, like bitsandbytes."""
    n = x.numel()
    blocks = math.ceil(n / bs)
    xp = torch.cat([x, torch.zeros(blocks * bs - n)]).view(blocks, bs)
    absmax = xp.abs().amax(1)
    scaled = torch.clamp(xp * (1 / absmax).view(-1, 1), -1, 1).flatten()[:n]
    return absmax, scaled


def quantize_ref(w, qt, bs, dq, nested_map):
    x = w.float().flatten()
    n = x.numel()
    absmax, scaled = blockwise_scale(x, bs)
    codes = code4(qt, scaled)
    if n % 2:
        codes = torch.cat([codes, code4(qt, torch.zeros(1))])
    packed = (codes[0::2] << 4 | codes[1::2]).to(torch.uint8).view(-1, 1)
    out = {"packed": packed, "absmax": absmax}
    if dq:
        offset = absmax.double().mean().float()
        y = absmax - offset
        a2, s2 = blockwise_scale(y, 256)
        out.update(offset=offset, nested_absmax=a2, codes8=nearest(nested_map, s2).to(torch.uint8))
    return out


def dequantize_ref(r, qt, bs, n, dtype, nested_map):
    codes = torch.stack([r["packed"].flatten() >> 4, r["packed"].flatten() & 15], 1).flatten()[:n]
    table = NF4 if qt == "nf4" else FP4
    if "codes8" in r:
        nested = r["nested_absmax"].repeat_interleave(256)[: r["codes8"].numel()]
        absmax = nested_map[r["codes8"].long()] * nested + r["offset"]
    else:
        absmax = r["absmax"]
    return (table[codes.long()] * absmax.repeat_interleave(bs)[:n]).to(dtype)


def run(args):
    p = subprocess.run([FITLM] + args, capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(f"fitlm {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return p.stdout


CFG = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=50, hidden_size=33,
           intermediate_size=45, num_hidden_layers=2, num_attention_heads=3, num_key_value_heads=1, head_dim=10,
           max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
           tie_word_embeddings=False, torch_dtype="bfloat16")
BNB_CONFIG_KEYS = {"_load_in_4bit", "_load_in_8bit", "bnb_4bit_compute_dtype",
                   "bnb_4bit_quant_storage", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant",
                   "llm_int8_enable_fp32_cpu_offload", "llm_int8_has_fp16_weight",
                   "llm_int8_skip_modules", "llm_int8_threshold", "load_in_4bit", "load_in_8bit",
                   "quant_method"}


def main():
    failures = []
    gen = torch.Generator().manual_seed(3)
    weights = ref.random_weights(CFG, gen, scale=0.3)
    weights = {k: v.to(torch.bfloat16) for k, v in weights.items()}
    # A block of zeros (absmax 0) and a few exact ties between codes.
    weights["model.layers.0.mlp.up_proj.weight"][0, :32] = 0
    weights["model.layers.1.self_attn.q_proj.weight"][0, :4] = torch.tensor(
        [0.5, -0.5, 0.25, 1.0]).to(torch.bfloat16) * 0.3
    rows = [{"input_ids": torch.randint(0, 50, (n,), generator=gen).tolist()} for n in (9, 14)]
    adapter = ref.random_adapter(CFG, ["q_proj", "v_proj", "down_proj"], 4, gen)
    dyn = bnb_dynamic_map()
    with tempfile.TemporaryDirectory() as d:
        ref.write_model_dir(f"{d}/base", CFG, weights, dtype=torch.bfloat16)
        ref.write_adapter_dir(f"{d}/adapter", ["q_proj", "v_proj", "down_proj"], 4, 8, False,
                              adapter)
        with open(f"{d}/rows.jsonl", "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        for qt in ("nf4", "fp4"):
            for dq in (False, True):
                for bs in (32, 64, 256):
                    name = f"{qt} dq={dq} bs={bs}"
                    out = f"{d}/q-{qt}-{dq}-{bs}"
                    run(["quantize", "--model", f"{d}/base", "--out", out, "--quant-type", qt,
                         "--blocksize", str(bs)] + ([] if dq else ["--no-double-quant"]))
                    got = st.load(f"{out}/model.safetensors")
                    cfg = json.load(open(f"{out}/config.json"))
                    qc = cfg.get("quantization_config", {})
                    if set(qc) != BNB_CONFIG_KEYS or qc["bnb_4bit_quant_type"] != qt or \
                            qc["bnb_4bit_use_double_quant"] != dq or not qc["load_in_4bit"]:
                        failures.append(f"{name}: quantization_config {qc}")
                    deq = {}
                    for k, w in weights.items():
                        if not (k.startswith("model.layers.") and k.endswith("_proj.weight")):
                            if not torch.equal(got[k], w):
                                failures.append(f"{name}: {k} changed")
                            deq[k] = w
                            continue
                        nmap = got[k + ".nested_quant_map"] if dq else dyn
                        if dq and (nmap - dyn).abs().max() > 1e-7:
                            failures.append(f"{name}: {k} nested_quant_map differs from "
                                            f"create_dynamic_map by {(nmap - dyn).abs().max()}")
                        r = quantize_ref(w, qt, bs, dq, nmap)
                        checks = [("packed", got[k], r["packed"])]
                        if dq:
                            checks += [("absmax codes", got[k + ".absmax"], r["codes8"]),
                                       ("nested_absmax", got[k + ".nested_absmax"],
                                        r["nested_absmax"])]
                        else:
                            checks += [("absmax", got[k + ".absmax"], r["absmax"])]
                        table = NF4 if qt == "nf4" else FP4
                        checks += [("quant_map", got[k + ".quant_map"], table)]
                        for what, a, b in checks:
                            if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
                                failures.append(f"{name}: {k} {what} differs "
                                                f"({a.dtype} {tuple(a.shape)} vs {b.dtype} "
                                                f"{tuple(b.shape)})")
                        state = {"quant_type": qt, "blocksize": bs, "dtype": "bfloat16",
                                 "shape": list(w.shape)}
                        if dq:
                            state.update(nested_blocksize=256, nested_dtype="float32",
                                         nested_offset=r["offset"].item())
                        key = f"{k}.quant_state.bitsandbytes__{qt}"
                        if key not in got or bytes(got[key].tolist()) != json.dumps(state).encode():
                            failures.append(f"{name}: {key} is not {json.dumps(state)}")
                        deq[k] = dequantize_ref(r, qt, bs, w.numel(), torch.bfloat16,
                                                nmap).view(w.shape)
                    # The 4-bit model computes with the dequantized weights.
                    m = ref.Reference(CFG)
                    params = {k: v.double() for k, v in deq.items()}
                    lora = ({k: v.double().requires_grad_(True) for k, v in adapter.items()}, 2.0)
                    total, count = 0, 0
                    for row in rows:
                        labels = list(row["input_ids"])
                        s, n = m.loss_sum(m.forward(row["input_ids"], params, lora), labels)
                        total, count = total + s, count + n
                    loss = total / count
                    loss.backward()
                    ev = json.loads(run(["eval", "--json", "--model", out, "--data",
                                         f"{d}/rows.jsonl", "--adapter", f"{d}/adapter"]))
                    if abs(ev["loss"] - float(loss)) > TOL * abs(float(loss)):
                        failures.append(f"{name}: eval loss {ev['loss']} vs {float(loss)}")
                    if bs == 64:  # quantize-on-load (--quantize) gives the same codes
                        on_load = json.loads(run(
                            ["eval", "--json", "--model", f"{d}/base", "--data",
                             f"{d}/rows.jsonl", "--adapter", f"{d}/adapter", "--quantize", qt] +
                            ([] if dq else ["--no-double-quant"])))
                        if on_load["loss"] != ev["loss"]:
                            failures.append(f"{name}: --quantize loss {on_load['loss']} vs "
                                            f"pre-quantized {ev['loss']}")
                    dump = st.load(run_dump(d, out))
                    for k, v in lora[0].items():
                        g = dump.get("grad." + k)
                        if g is None:
                            failures.append(f"{name}: dump has no grad for {k}")
                            continue
                        e = float((g.double() - v.grad).norm() / max(v.grad.norm(), 1e-30))
                        if e > TOL:
                            failures.append(f"{name}: LoRA grad {k} rel err {e:.2e}")
                    if qt == "nf4" and dq and bs == 64:
                        check_merge(d, out, deq, adapter, failures)
                    print(f"{name}: checked", flush=True)
        check_malformed(d, failures)
    for f in failures:
        print("FAIL", f)
    sys.exit(1 if failures else 0)


def check_merge(d, model, deq, adapter, failures):
    """`fitlm merge` on a 4-bit base writes a 16-bit model: dequantized weight + scale·B·A."""
    run(["merge", "--model", model, "--adapter", f"{d}/adapter", "--out", f"{d}/merged"])
    merged = st.load(f"{d}/merged/model.safetensors")
    if "quantization_config" in json.load(open(f"{d}/merged/config.json")):
        failures.append("merge: the merged config.json keeps quantization_config")
    if any(".absmax" in k or ".quant_state." in k for k in merged):
        failures.append("merge: 4-bit companion tensors were copied")
    for k, w in deq.items():
        want = w.float()
        a = f"base_model.model.{k[:-len('.weight')]}.lora_A.weight"
        if a in adapter:
            b = a.replace("lora_A", "lora_B")
            want = want + 2.0 * (adapter[b].float() @ adapter[a].float())
        got = merged.get(k)
        if got is None or got.dtype != torch.bfloat16 or got.shape != w.shape:
            failures.append(f"merge: {k} missing or not bf16 {tuple(w.shape)}")
            continue
        # One bf16 rounding of an f32 sum whose GEMM order may differ: within one bf16 ulp.
        err = (got.float() - want).abs() - want.abs() * 2.0 ** -8
        if err.max() > 1e-6:
            failures.append(f"merge: {k} off by {err.max():.3g} beyond a bf16 ulp")


def check_malformed(d, failures):
    """Each broken 4-bit checkpoint is a clear input error (exit 2) naming what is wrong."""
    good = f"{d}/q-nf4-True-64"
    tensors = st.load(f"{good}/model.safetensors")
    cfg = json.load(open(f"{good}/config.json"))
    w = "model.layers.0.self_attn.q_proj.weight"
    state_key = w + ".quant_state.bitsandbytes__nf4"
    state = json.loads(bytes(tensors[state_key].tolist()))

    def with_state(**kw):
        s = dict(state, **kw)
        return {state_key: torch.tensor(list(json.dumps(s).encode()), dtype=torch.uint8)}

    cases = {
        "absmax count": ({w + ".absmax": tensors[w + ".absmax"][:-1]}, None, "absmax"),
        "packed size": ({w: tensors[w][:-1]}, None, w),
        "quant_type": (with_state(quant_type="nf5"), None, "quant_type"),
        "blocksize": (with_state(blocksize=48), None, "blocksize"),
        "shape": (with_state(shape=[30, 34]), None, "shape"),
        "nested_offset": (with_state(nested_offset="x"), None, "nested_offset"),
        "quant_map": ({w + ".quant_map": tensors[w + ".quant_map"] * 2}, None, "quant_map"),
        "state json": ({state_key: torch.tensor(list(b"{not json"), dtype=torch.uint8)}, None,
                       "JSON"),
        "8-bit config": ({}, dict(load_in_8bit=True, load_in_4bit=False), "8-bit"),
        "quant type config": ({}, dict(bnb_4bit_quant_type="int4"), "bnb_4bit_quant_type"),
    }
    for name, (replace, qc, expect) in cases.items():
        bad = f"{d}/bad-{name.replace(' ', '_')}"
        os.makedirs(bad, exist_ok=True)
        st.save({**tensors, **replace}, f"{bad}/model.safetensors")
        c = json.loads(json.dumps(cfg))
        if qc:
            c["quantization_config"].update(qc)
        json.dump(c, open(f"{bad}/config.json", "w"))
        p = subprocess.run([FITLM, "eval", "--model", bad, "--data", f"{d}/rows.jsonl"],
                           capture_output=True, text=True)
        if p.returncode != 2 or expect not in p.stderr or "internal" in p.stderr:
            failures.append(f"malformed {name}: exit {p.returncode}, {p.stderr.strip()[:200]}")
    print("malformed 4-bit checkpoints: checked", flush=True)


def run_dump(d, model):
    out = f"{d}/dump.safetensors"
    run(["dump", "--mode", "lora", "--model", model, "--adapter", f"{d}/adapter", "--data",
         f"{d}/rows.jsonl", "--out", out])
    return out


if __name__ == "__main__":
    main()
