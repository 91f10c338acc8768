"""Bad model directories reach the user as a clear error and exit code 2, never a crash."""
import json
import os
import struct
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
import hf_reference as ref  # noqa: E402

FITLM = os.environ.get("FITLM_BIN", "build/fitlm")

CFG = {"architectures": ["LlamaForCausalLM"], "vocab_size": 50, "hidden_size": 16,
       "intermediate_size": 24, "num_hidden_layers": 1, "num_attention_heads": 2,
       "num_key_value_heads": 1, "rms_norm_eps": 1e-6, "hidden_act": "silu"}


def run_eval(model_dir, data):
    p = subprocess.run([FITLM, "eval", "--model", model_dir, "--data", data],
                       capture_output=True, text=True)
    return p.returncode, p.stderr


def main():
    failures, cases = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "rows.jsonl")
        with open(data, "w") as f:
            f.write(json.dumps({"input_ids": [1, 2, 3, 4]}) + "\n")
        weights = ref.random_weights(CFG, torch.Generator().manual_seed(0))

        def model(name, cfg=CFG, w=weights, mutate=None):
            d = os.path.join(tmp, name)
            ref.write_model_dir(d, cfg, w)
            if mutate:
                mutate(d)
            return d

        def truncate(d):
            path = os.path.join(d, "model.safetensors")
            size = os.path.getsize(path)
            with open(path, "r+b") as f:
                f.truncate(size - 10)

        def header_past_eof(d):
            path = os.path.join(d, "model.safetensors")
            with open(path, "r+b") as f:
                f.write(struct.pack("<Q", 1 << 40))

        def garbage_config(d):
            with open(os.path.join(d, "config.json"), "w") as f:
                f.write("{not json")

        wrong_shape = dict(weights)
        wrong_shape["model.norm.weight"] = torch.ones(17)
        missing = {k: v for k, v in weights.items() if "down_proj" not in k}
        expectations = [
            (model("unknown-arch", {**CFG, "architectures": ["BertModel"]}),
             "architecture 'BertModel' is not supported"),
            (model("missing-field", {k: v for k, v in CFG.items() if k != "vocab_size"}),
             "missing required field 'vocab_size'"),
            (model("bad-json", mutate=garbage_config), "invalid JSON"),
            (model("truncated", mutate=truncate), "model.safetensors"),
            (model("header-past-eof", mutate=header_past_eof), "model.safetensors"),
            (model("wrong-shape", w=wrong_shape), "tensor 'model.norm.weight' has shape [17]"),
            (model("missing-tensor", w=missing), "is missing from the checkpoint"),
            (os.path.join(tmp, "no-such-dir"), "is not a directory"),
        ]
        for d, fragment in expectations:
            cases += 1
            rc, err = run_eval(d, data)
            if rc != 2 or fragment not in err:
                failures.append(f"{os.path.basename(d)}: rc={rc} stderr={err.strip()[:300]}")
        # Bad data rows: file:line in the message.
        cases += 1
        bad = os.path.join(tmp, "bad.jsonl")
        with open(bad, "w") as f:
            f.write(json.dumps({"input_ids": [1, 2]}) + "\n{oops\n")
        rc, err = run_eval(model("ok"), bad)
        if rc != 2 or "bad.jsonl:2" not in err:
            failures.append(f"bad rows: rc={rc} stderr={err.strip()[:300]}")
        cases += 1
        oov = os.path.join(tmp, "oov.jsonl")
        with open(oov, "w") as f:
            f.write(json.dumps({"input_ids": [1, 999]}) + "\n")
        rc, err = run_eval(model("ok2"), oov)
        if rc != 2 or "outside the vocabulary" not in err:
            failures.append(f"out-of-vocab id: rc={rc} stderr={err.strip()[:300]}")
    for f in failures:
        print("FAIL", f)
    print(f"{cases - len(failures)} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
