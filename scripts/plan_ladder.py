"""Issue 15's regenerated tables (docs/planning.md), from `fitlm plan --gpus ... --json`; all
predicted, not measured:
  ladder: (a) the model-size ladder on 2×A5000, one row per model and mode (`--top 1`);
  tiers:  (b) the largest micro-batch per GPU tier for LoRA without offload or
          quantization, with and without recompute, at seq 512 and 2048;
  t4:     (c) 30B-class QLoRA on 2×T4.
  python3 scripts/plan_ladder.py FITLM_BIN [ladder|tiers|t4] [--timeout SECONDS] [--models a,b]"""
import json
import subprocess
import sys

FITLM = sys.argv[1]
TIMEOUT = float(sys.argv[sys.argv.index("--timeout") + 1]) if "--timeout" in sys.argv else 300
MODELS = (sys.argv[sys.argv.index("--models") + 1].split(",") if "--models" in sys.argv else
          ["llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b", "qwen2.5-14b", "qwen2.5-32b",
           "llama-3.1-70b"])
TABLE = next((a for a in sys.argv[2:] if a in ("ladder", "tiers", "t4")), "ladder")
GIB = 2**30


def search(args):
    cmd = [FITLM, "plan", "--json"] + args
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return None
    if res.returncode not in (0, 3):
        sys.exit(f"{' '.join(cmd)}: rc {res.returncode}\n{res.stderr}")
    return json.loads(res.stdout)


def row(label, j, columns):
    """One markdown row: the best candidate of search result j, or why there is none."""
    if j is None:
        return f"| {label} | not generated: the search ran past {TIMEOUT:.0f} s |" + " |" * (columns + 1)
    if not j["candidates"]:
        return f"| {label} | does not fit |" + " |" * columns + f" {'; '.join(j['suggestions'])} |"
    k = j["candidates"][0]
    return (f"| {label} | {k['strategy']} | {k['micro_batch']} × {k['accumulation']} | "
            f"{k['recompute']} | {k['offload']} | {k['peak_bytes'] / GIB:.2f} GiB | "
            f"{k['host_bytes'] / GIB:.2f} GiB | {k['tokens_per_s']:,.0f} |")


def ladder():
    print("| model | mode | strategy | mb × acc | recompute | offload | GPU peak | host | "
          "tok/s (predicted) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for model in MODELS:
        for mode in ["lora", "qlora", "full"]:
            j = search(["--arch", model, "--gpus", "2xA5000", "--mode", mode, "--seq", "2048",
                        "--host-memory", "64GiB", "--top", "1"])
            print(row(f"{model} | {mode}", j, 5), flush=True)


def largest_micro_batch(model, gpu, seq):
    """{recompute: the largest micro-batch that fits} for LoRA without offload or quantization:
    doubling, then bisection (memory grows with the micro-batch), each step one search with that
    micro-batch fixed."""
    def fitting(mb):
        j = search(["--arch", model, "--gpus", gpu, "--mode", "lora", "--seq", str(seq), "--top",
                    "0", "--micro-batch", str(mb)]) or {"candidates": []}
        return {k["recompute"] for k in j["candidates"]
                if k["offload"] == "none" and k["quantize"] == "none"}
    out = {}
    for rc in ["none", "full"]:
        lo, hi = 0, 1
        while hi <= 4096 and rc in fitting(hi):
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if rc in fitting(mid) else (lo, mid)
        out[rc] = lo
    return out


def tiers():
    gpus = ["T4", "V100-32GB", "A100-40GB", "A100-80GB", "H100"]
    print("| model | seq | " + " | ".join(gpus) + " |")
    print("| --- | --- |" + " --- |" * len(gpus))
    for model in ["llama-3.2-1b", "llama-3.1-8b", "qwen2.5-14b"]:
        for seq in [512, 2048]:
            cells = []
            for gpu in gpus:
                best = largest_micro_batch(model, gpu, seq)
                cells.append(" / ".join(str(best[rc] or "–") for rc in ["none", "full"]))
            print(f"| {model} | {seq} | " + " | ".join(cells) + " |", flush=True)


def t4():
    print("| model | strategy | mb × acc | recompute | offload | GPU peak | host | "
          "tok/s (predicted) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for model in ["qwen2.5-32b", "qwen3-30b-a3b", "mixtral-8x7b"]:
        for host in ["32GiB", "64GiB"]:
            j = search(["--arch", model, "--gpus", "2xT4", "--mode", "qlora", "--seq", "2048",
                        "--host-memory", host, "--top", "1"])
            print(row(f"{model} (host {host})", j, 5), flush=True)


{"ladder": ladder, "tiers": tiers, "t4": t4}[TABLE]()
