"""Random-weight Llama-3 and Qwen3 model directories (real HF layouts, bf16 on disk) and a
pretokenized dataset of rows of random lengths, for the GPU suite (scripts/device/gpu-suite.sh).
  python3 scripts/device/make_models.py OUT_DIR TOKENIZER_DIR
TOKENIZER_DIR holds a tokenizer.json/tokenizer_config.json (the demo's byte tokenizer)."""
import json
import os
import random
import shutil
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "tools"))
from hf_reference import random_weights, write_model_dir  # noqa: E402

VOCAB = 512


def base(arch, **kw):
    cfg = dict(architectures=[arch], model_type="llama" if arch == "LlamaForCausalLM" else "qwen3",
               vocab_size=VOCAB, hidden_size=512, intermediate_size=1024, num_hidden_layers=2,
               num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=1024,
               rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False,
               bos_token_id=256, eos_token_id=257, torch_dtype="bfloat16")
    cfg.update(kw)
    return cfg


MODELS = {
    # Llama-3 style: GQA 4:1, head_dim 64, llama3 rope scaling.
    "llama3": base("LlamaForCausalLM", rope_scaling=dict(
        rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=256)),
    # Qwen3 style: explicit head_dim 128, q/k norms, GQA 2:1.
    "qwen3": base("Qwen3ForCausalLM", num_attention_heads=4, head_dim=128, rope_theta=1e6,
                  attention_bias=False, rms_norm_eps=1e-6),
}


def main():
    out, tok = sys.argv[1], sys.argv[2]
    for name, cfg in MODELS.items():
        d = os.path.join(out, name)
        gen = torch.Generator().manual_seed(11)
        write_model_dir(d, cfg, random_weights(cfg, gen, scale=0.05), dtype=torch.bfloat16)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(tok, f), d)
    # Rows of 8..240 tokens: packing into 256-token rows gives segments of unequal length.
    rng = random.Random(5)
    with open(os.path.join(out, "train.jsonl"), "w") as f:
        for _ in range(400):
            n = rng.randint(8, 240)
            f.write(json.dumps({"input_ids": [rng.randrange(0, 256) for _ in range(n)]}) + "\n")


if __name__ == "__main__":
    main()
