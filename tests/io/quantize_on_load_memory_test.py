#!/usr/bin/env python3
"""Quantize-on-load keeps host memory near the model it builds, not the checkpoint it reads.

A random bf16 Llama-style checkpoint of 313 MB is loaded by `fitlm eval --quantize nf4` on the
CPU backend. Its arena (f32 compute on the CPU: the 16-bit embedding and lm_head become f32) is
taken from `fitlm plan`; the mapped checkpoint pages are released tensor by tensor once uploaded
(SafetensorsFile::release), so the process's peak RSS must stay within the arena plus 150 MiB
(runtime, the host-side embedding, one tensor in flight). Without the release the whole mapped
file (313 MB) would add to the peak and fail the bound.
"""
import json
import os
import subprocess
import sys
import tempfile

FITLM = os.environ.get("FITLM_BIN", "build/fitlm")
CFG = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=32000,
           hidden_size=1024, intermediate_size=4096, num_hidden_layers=6, num_attention_heads=16,
           num_key_value_heads=4, max_position_embeddings=256, rms_norm_eps=1e-5,
           rope_theta=10000.0, tie_word_embeddings=False, torch_dtype="bfloat16")
MIB = 1 << 20


def write_model(path):
    # In its own process: this one stays small (no torch, no weights), so a child forked from it
    # starts small and its peak RSS is its own.
    import torch
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
    import hf_reference as ref
    gen = torch.Generator().manual_seed(1)
    weights = {k: v.to(torch.bfloat16) for k, v in ref.random_weights(CFG, gen).items()}
    ref.write_model_dir(path, CFG, weights, dtype=torch.bfloat16)


def peak_rss(args):
    """Runs args; returns its peak resident set size in bytes (it must succeed)."""
    pid = os.posix_spawn(args[0], args, os.environ)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        print(f"FAIL: {' '.join(args)} exited {os.waitstatus_to_exitcode(status)}")
        sys.exit(1)
    return usage.ru_maxrss * 1024


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "write":
        write_model(sys.argv[2])
        return
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, __file__, "write", f"{d}/m"], check=True)
        file_bytes = os.path.getsize(f"{d}/m/model.safetensors")
        with open(f"{d}/rows.jsonl", "w") as f:
            f.write(json.dumps({"input_ids": list(range(1, 65))}) + "\n")
        plan = subprocess.run([FITLM, "plan", "--model", f"{d}/m", "--mode", "eval", "--dtype",
                               "f32", "--quantize", "nf4", "--seq", "64"],
                              capture_output=True, text=True, check=True).stdout
        arena = next(line for line in plan.splitlines() if line.strip().startswith("arena"))
        value, unit = arena.split()[1:3]
        arena_bytes = float(value) * {"MiB": MIB, "GiB": 1 << 30, "KiB": 1 << 10}[unit]
        # The host-side embedding (embedding_on_host) is outside the arena: f32 on the CPU.
        host_embed = CFG["vocab_size"] * CFG["hidden_size"] * 4
        peak = peak_rss([os.path.abspath(FITLM), "-q", "eval", "--json", "--model", f"{d}/m",
                         "--data", f"{d}/rows.jsonl", "--quantize", "nf4"])
        budget = arena_bytes + host_embed + 150 * MIB
        print(f"checkpoint {file_bytes / MIB:.0f} MiB, arena {arena_bytes / MIB:.0f} MiB + host "
              f"embedding {host_embed / MIB:.0f} MiB; peak RSS {peak / MIB:.0f} MiB "
              f"(bound {budget / MIB:.0f} MiB)")
        if peak > budget:
            print("FAIL: peak RSS over the bound")
            sys.exit(1)


if __name__ == "__main__":
    main()
