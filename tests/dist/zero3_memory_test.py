#!/usr/bin/env python3
"""ZeRO-3 keeps each rank's host memory near its shard while it loads and trains.

A random bf16 Llama-style checkpoint whose layers dominate (12 layers of 15.2M parameters, a
2048-token vocabulary) is trained for one LoRA step on 2 CPU ranks, once with ddp and once with
zero3. On the CPU backend the arena is host memory (f32: 696 MiB of layer weights per replica).
Each rank reports its peak RSS after the first step, loading included (metrics.jsonl,
rank_host_peak_bytes). With zero3 every rank must peak within its own plan (`fitlm plan --nproc 2
--strategy zero3`: half the layers plus one gathered layer) + 200 MiB (runtime, MPI, one tensor
in flight while loading), and below the ddp ranks' peak by at least 80% of what zero3 saves on
paper: half the layer weights less the one gathered layer.
"""
import json
import os
import subprocess
import sys
import tempfile

FITLM = os.environ.get("FITLM_BIN", "build/fitlm")
CFG = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=2048,
           hidden_size=1024, intermediate_size=4096, num_hidden_layers=12, num_attention_heads=16,
           num_key_value_heads=4, max_position_embeddings=256, rms_norm_eps=1e-5,
           rope_theta=10000.0, tie_word_embeddings=False, torch_dtype="bfloat16")
MIB = 1 << 20
UNITS = {"B": 1, "KiB": 1 << 10, "MiB": MIB, "GiB": 1 << 30}


def write_model(path):
    import torch
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
    import hf_reference as ref
    gen = torch.Generator().manual_seed(2)
    weights = {k: v.to(torch.bfloat16) for k, v in ref.random_weights(CFG, gen).items()}
    ref.write_model_dir(path, CFG, weights, dtype=torch.bfloat16)


def plan_bytes(model, *args):
    out = subprocess.run([FITLM, "plan", "--model", model, "--dtype", "f32", "--seq", "64",
                          "--lora-r", "8", *args], capture_output=True, text=True, check=True)
    line = next(l for l in out.stdout.splitlines() if l.strip().startswith("arena"))
    value, unit = line.split()[1:3]
    return float(value) * UNITS[unit]


def host_peaks(d, strategy):
    out = f"{d}/{strategy}"
    with open(f"{d}/{strategy}.yaml", "w") as f:
        f.write(f"""base_model: {d}/m
datasets: [{{path: {d}/rows.jsonl, type: pretokenized}}]
adapter: lora
lora_r: 8
lora_alpha: 16
sequence_len: 64
micro_batch_size: 1
max_steps: 1
learning_rate: 1.0e-3
output_dir: {out}
""")
    env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_MCA_rmaps_base_oversubscribe="1")
    r = subprocess.run([FITLM, "-q", "train", f"{d}/{strategy}.yaml", "--nproc", "2",
                        f"--strategy={strategy}"], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        sys.exit(f"FAIL: {strategy} run exited {r.returncode}")
    lines = [json.loads(l) for l in open(f"{out}/metrics.jsonl") if "rank_host_peak_bytes" in l]
    assert len(lines) == 1, lines
    return lines[0]["rank_host_peak_bytes"]


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "write":
        write_model(sys.argv[2])
        return
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, __file__, "write", f"{d}/m"], check=True)
        with open(f"{d}/rows.jsonl", "w") as f:
            for i in range(4):
                f.write(json.dumps({"input_ids": [(7 * i + j) % 2000 + 1 for j in range(64)]}) + "\n")
        h, i, kv = CFG["hidden_size"], CFG["intermediate_size"], 256
        layers_f32 = CFG["num_hidden_layers"] * (2 * h * h + 2 * h * kv + 3 * h * i) * 4
        zero3_plan = plan_bytes(f"{d}/m", "--nproc", "2", "--strategy", "zero3")
        ddp = host_peaks(d, "ddp")
        zero3 = host_peaks(d, "zero3")
        print(f"layer weights (f32) {layers_f32 / MIB:.0f} MiB; zero3 plan per rank "
              f"{zero3_plan / MIB:.0f} MiB")
        print("peak RSS per rank, ddp:  " + ", ".join(f"{b / MIB:.0f} MiB" for b in ddp))
        print("peak RSS per rank, zero3: " + ", ".join(f"{b / MIB:.0f} MiB" for b in zero3))
        for r, (a, b) in enumerate(zip(ddp, zero3)):
            if b > zero3_plan + 200 * MIB:
                sys.exit(f"FAIL: zero3 rank {r} peaked at {b / MIB:.0f} MiB, over its plan "
                         f"{zero3_plan / MIB:.0f} MiB + 200 MiB")
            saving = layers_f32 / 2 - layers_f32 / CFG["num_hidden_layers"]
            if a - b < 0.8 * saving:
                sys.exit(f"FAIL: zero3 rank {r} peaked at {b / MIB:.0f} MiB, ddp at "
                         f"{a / MIB:.0f} MiB: not 80% of the {saving / MIB:.0f} MiB saving below")
    print("zero3 memory test passed")


if __name__ == "__main__":
    main()
