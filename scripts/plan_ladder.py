"""Issue 15 (a): fitlm's answer for the model-size ladder on 2×A5000 (docs/planning.md), one
markdown row per model and mode from `fitlm plan --json --top 1`. Predicted, not measured.
  python3 scripts/plan_ladder.py FITLM_BIN [--timeout SECONDS] [--models a,b,...]"""
import json
import subprocess
import sys

FITLM = sys.argv[1]
TIMEOUT = float(sys.argv[sys.argv.index("--timeout") + 1]) if "--timeout" in sys.argv else 300
MODELS = (sys.argv[sys.argv.index("--models") + 1].split(",") if "--models" in sys.argv else
          ["llama-3.2-1b", "llama-3.1-8b", "qwen2.5-14b", "qwen2.5-32b", "llama-3.1-70b"])
GIB = 2**30

print("| model | mode | strategy | mb × acc | recompute | offload | GPU peak | host | "
      "tok/s (predicted) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for model in MODELS:
    for mode in ["lora", "qlora", "full"]:
        cmd = [FITLM, "plan", "--arch", model, "--gpus", "2xA5000", "--mode", mode, "--seq",
               "2048", "--host-memory", "64GiB", "--json", "--top", "1"]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"| {model} | {mode} | not generated: the search ran past {TIMEOUT:.0f} s | "
                  "| | | | | |", flush=True)
            continue
        if res.returncode not in (0, 3):
            sys.exit(f"{' '.join(cmd)}: rc {res.returncode}\n{res.stderr}")
        j = json.loads(res.stdout)
        if not j["candidates"]:
            print(f"| {model} | {mode} | does not fit | | | | | | {'; '.join(j['suggestions'])} |",
                  flush=True)
            continue
        k = j["candidates"][0]
        print(f"| {model} | {mode} | {k['strategy']} | {k['micro_batch']} × {k['accumulation']} | "
              f"{k['recompute']} | {k['offload']} | {k['peak_bytes'] / GIB:.2f} GiB | "
              f"{k['host_bytes'] / GIB:.2f} GiB | {k['tokens_per_s']:,.0f} |", flush=True)
