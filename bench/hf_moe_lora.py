"""HF transformers + PEFT baseline for issue 14: Qwen3-30B-A3B shapes (random bf16 weights),
LoRA r16 on q/k/v/o, seq 2048, gradient checkpointing, AdamW, batch 1 and 4; tokens/s and peak
allocated memory as JSON lines. Run on the device with its own Python:
  /opt/torch/.venv/bin/python3 bench/hf_moe_lora.py [--layers N] [--batches 1,4]"""
import argparse
import json
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("--layers", type=int, default=48)
ap.add_argument("--batches", default="1,4")
ap.add_argument("--steps", type=int, default=5)
ap.add_argument("--seq", type=int, default=2048)
args = ap.parse_args()

cfg = Qwen3MoeConfig(vocab_size=151936, hidden_size=2048, intermediate_size=6144,
                     num_hidden_layers=args.layers, num_attention_heads=32, num_key_value_heads=4,
                     head_dim=128, num_experts=128, num_experts_per_tok=8,
                     moe_intermediate_size=768, norm_topk_prob=True, decoder_sparse_step=1,
                     mlp_only_layers=[], max_position_embeddings=40960, rope_theta=1e6,
                     rms_norm_eps=1e-6, tie_word_embeddings=False, use_cache=False,
                     output_router_logits=False)
torch.manual_seed(0)
torch.set_default_dtype(torch.bfloat16)
t0 = time.time()
with torch.device("cuda"):
    model = Qwen3MoeForCausalLM(cfg)
torch.set_default_dtype(torch.float32)
print(json.dumps({"built_s": round(time.time() - t0, 1),
                  "params": sum(p.numel() for p in model.parameters()),
                  "experts_implementation": getattr(cfg, "_experts_implementation", None)}),
      flush=True)
model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                         task_type="CAUSAL_LM"))
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
for bs in [int(b) for b in args.batches.split(",")]:
    ids = torch.randint(0, cfg.vocab_size, (bs, args.seq), device="cuda")
    torch.cuda.reset_peak_memory_stats()

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    try:
        for _ in range(2):
            step()
        torch.cuda.synchronize()
        t = time.time()
        for _ in range(args.steps):
            loss = step()
        torch.cuda.synchronize()
        dt = time.time() - t
        print(json.dumps({"batch": bs, "seq": args.seq, "layers": args.layers,
                          "tok_s": round(bs * args.seq * args.steps / dt, 1),
                          "loss": float(loss),
                          "max_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                          "max_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2)}),
              flush=True)
    except torch.OutOfMemoryError as e:
        print(json.dumps({"batch": bs, "oom": str(e)[:200]}), flush=True)
