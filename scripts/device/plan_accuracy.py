"""Issue 15: the planner's predictions against measurements on one GPU. For each configuration
(preset, mode, micro-batch, recompute, offload, 4-bit base) it asks `fitlm plan --gpus GPU
--json` for the candidate with exactly that configuration (its per-GPU device bytes and
predicted tok/s), runs `fitlm bench` on it, and prints predicted against measured memory and
speed. Measured device bytes = bench's measured arena growth + the backend's fixed workspace
(bench's reserved_bytes), the same parts the plan's device_bytes adds.
  python3 scripts/device/plan_accuracy.py FITLM_BIN GPU [OUT_JSONL] [--holdout] [--from I] [--only N]"""
import json
import subprocess
import sys
import time

FITLM, GPU = sys.argv[1], sys.argv[2]
OUT = sys.argv[3] if len(sys.argv) > 3 and not sys.argv[3].startswith("--") else None
ONLY = int(sys.argv[sys.argv.index("--only") + 1]) if "--only" in sys.argv else 0
FROM = int(sys.argv[sys.argv.index("--from") + 1]) if "--from" in sys.argv else 0
SEQ = 2048

# (preset, mode, micro-batch, recompute, offload list, nf4)
CONFIGS = [
    ("llama-3.2-1b", "lora", 1, False, [], False),
    ("llama-3.2-1b", "lora", 4, False, [], False),
    ("llama-3.2-1b", "lora", 8, True, [], False),
    ("llama-3.2-1b", "full", 2, False, [], False),
    ("llama-3.2-1b", "full", 4, True, ["optimizer"], False),
    ("llama-3.1-8b", "lora", 1, False, [], False),
    ("llama-3.1-8b", "lora", 4, True, [], False),
    ("llama-3.1-8b", "lora", 1, True, ["weights"], False),
    ("llama-3.1-8b", "lora", 2, False, ["activations"], False),
    ("llama-3.1-8b", "lora", 4, True, ["weights", "activations"], False),
    ("llama-3.1-8b", "lora", 1, True, [], True),
    ("llama-3.1-8b", "lora", 4, True, ["weights"], True),
    ("llama-3.1-8b", "full", 1, True, ["optimizer"], False),
    ("llama-3.1-8b", "lora", 2, True, ["optimizer"], False),
    ("qwen2.5-14b", "lora", 1, True, [], False),
    ("qwen2.5-14b", "lora", 2, True, [], True),
    ("qwen2.5-14b", "lora", 1, False, ["activations"], True),
    ("qwen3-8b", "lora", 2, True, [], False),
    ("mistral-7b", "lora", 1, False, [], True),
    ("qwen2.5-32b", "lora", 1, True, ["weights"], True),
    ("qwen3-30b-a3b", "lora", 1, True, [], False),
    ("qwen3-30b-a3b", "lora", 1, True, [], True),
]
# Session 14: configurations the cost-model fit (scripts/cost_model_fit.py) never saw.
HOLDOUT = [
    ("llama-3.2-1b", "lora", 2, False, [], False),
    ("llama-3.2-1b", "full", 1, True, [], False),
    ("llama-3.1-8b", "lora", 2, False, [], False),
    ("llama-3.1-8b", "lora", 2, False, [], True),
    ("qwen2.5-7b", "lora", 1, False, [], False),
    ("qwen2.5-7b", "lora", 4, True, [], True),
    ("qwen2.5-14b", "lora", 1, True, [], True),
    ("qwen3-8b", "lora", 1, False, [], False),
    ("qwen3-30b-a3b", "lora", 2, True, [], False),
    ("mixtral-8x7b", "lora", 1, True, [], True),
]
if "--holdout" in sys.argv:
    CONFIGS = HOLDOUT
CONFIGS = CONFIGS[FROM:FROM + ONLY] if ONLY else CONFIGS[FROM:]

plans = {}


def plan_for(arch, mode):
    key = (arch, mode)
    if key not in plans:
        cmd = [FITLM, "plan", "--arch", arch, "--gpus", GPU, "--seq", str(SEQ), "--json",
               "--top", "0", "--max-micro-batch", "8",
               "--mode", mode if mode == "full" else "lora"]
        if mode != "full":
            cmd.append("--allow-quantize")
        t0 = time.time()
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode not in (0, 3):
            sys.exit(f"plan failed: {' '.join(cmd)}\n{res.stderr}")
        j = json.loads(res.stdout)
        plans[key] = j["candidates"] + j["excluded"]
        print(f"# plan {arch} {mode}: {len(plans[key])} candidates in {time.time() - t0:.1f} s",
              flush=True)
    return plans[key]


def find(arch, mode, mb, recompute, offload, nf4):
    want = ",".join(o for o in ["optimizer", "weights", "activations"] if o in offload) or "none"
    for k in plan_for(arch, mode):
        if (k["micro_batch"] == mb and k["recompute"] == ("full" if recompute else "none") and
                k["offload"] == want and k["quantize"] == ("nf4" if nf4 else "none")):
            return k
    sys.exit(f"no candidate for {arch} {mode} mb {mb} recompute {recompute} {want} nf4 {nf4}")


rows = []
out = open(OUT, "w") if OUT else None
for arch, mode, mb, recompute, offload, nf4 in CONFIGS:
    k = find(arch, mode, mb, recompute, offload, nf4)
    cmd = [FITLM, "bench", "--arch", arch, "--mode", mode, "--seq", str(SEQ), "--micro-batch",
           str(mb), "--recompute", "full" if recompute else "none", "--warmup", "1", "--steps",
           "3", "--json"] + [f"--offload-{o}" for o in offload]
    if nf4:
        cmd += ["--quantize", "nf4"]
    t0 = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True)
    label = f"{arch} {mode} mb{mb} rc={'full' if recompute else 'none'} " \
            f"off={','.join(offload) or '-'}{' nf4' if nf4 else ''}"
    if res.returncode != 0:
        print(f"{label}: bench rc {res.returncode}: {res.stderr.strip()[-300:]}", flush=True)
        continue
    b = json.loads(res.stdout.strip().splitlines()[-1])
    measured = b["measured_bytes"] + b["reserved_bytes"]
    planned_bench = b["planned_bytes"] + b["reserved_bytes"]
    predicted = k["device_bytes"][0]
    mem_err = (measured - predicted) / predicted
    speed_err = (b["tokens_per_s"] - k["tokens_per_s"]) / k["tokens_per_s"]
    row = dict(config=label, predicted_bytes=predicted, bench_planned_bytes=planned_bench,
               measured_bytes=measured, predicted_tok_s=k["tokens_per_s"],
               measured_tok_s=b["tokens_per_s"], mem_err=mem_err, speed_err=speed_err,
               seconds=round(time.time() - t0, 1))
    rows.append(row)
    if out:
        out.write(json.dumps(row) + "\n")
        out.flush()
    print(f"{label}: memory predicted {predicted / 2**30:.3f} GiB, measured "
          f"{measured / 2**30:.3f} GiB ({100 * mem_err:+.3f}%, {(measured - predicted) / 2**20:+.1f} "
          f"MiB); tok/s predicted {k['tokens_per_s']:.0f}, measured {b['tokens_per_s']:.0f} "
          f"({100 * speed_err:+.1f}%) [{row['seconds']} s]", flush=True)

ok_mem = sum(1 for r in rows if abs(r["mem_err"]) <= 0.01 or
             abs(r["measured_bytes"] - r["predicted_bytes"]) <= 128 * 2**20)
ok_speed = sum(1 for r in rows if abs(r["speed_err"]) <= 0.15)
print(f"# {len(rows)} configurations: memory within 1% or 128 MiB: {ok_mem}; "
      f"tok/s within 15%: {ok_speed}")
