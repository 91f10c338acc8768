"""A float64 PyTorch reference of the Hugging Face Llama / Mistral / Qwen2 / Qwen3 decoders
(modeling_llama.py, modeling_qwen2.py, modeling_qwen3.py semantics) with PEFT LoRA, and writers
for random-weight model directories and adapters in the real HF/PEFT layouts."""
import json
import math
import os

import torch

from st import save

PROJ = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn",
        "o_proj": "self_attn", "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}


def head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def has_bias(cfg, proj):
    arch = cfg["architectures"][0]
    if arch == "Qwen2ForCausalLM":
        return proj in ("q_proj", "k_proj", "v_proj")
    if arch in ("LlamaForCausalLM", "Qwen3ForCausalLM"):
        if proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            return cfg.get("attention_bias", False)
        return cfg.get("mlp_bias", False)
    return False


def proj_shape(cfg, proj):
    h, i, hd = cfg["hidden_size"], cfg["intermediate_size"], head_dim(cfg)
    nh, nkv = cfg["num_attention_heads"], cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
    return {"q_proj": (nh * hd, h), "k_proj": (nkv * hd, h), "v_proj": (nkv * hd, h),
            "o_proj": (h, nh * hd), "gate_proj": (i, h), "up_proj": (i, h),
            "down_proj": (h, i)}[proj]


def random_weights(cfg, gen, scale=0.2):
    """Random weights named as HF checkpoints name them (norm weights around 1)."""
    w = {}
    h, v = cfg["hidden_size"], cfg["vocab_size"]
    w["model.embed_tokens.weight"] = torch.randn(v, h, generator=gen) * 0.5
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = 1 + 0.1 * torch.randn(h, generator=gen)
        w[p + "post_attention_layernorm.weight"] = 1 + 0.1 * torch.randn(h, generator=gen)
        if cfg["architectures"][0] == "Qwen3ForCausalLM":
            w[p + "self_attn.q_norm.weight"] = 1 + 0.1 * torch.randn(head_dim(cfg), generator=gen)
            w[p + "self_attn.k_norm.weight"] = 1 + 0.1 * torch.randn(head_dim(cfg), generator=gen)
        for proj, mod in PROJ.items():
            out, inp = proj_shape(cfg, proj)
            w[f"{p}{mod}.{proj}.weight"] = torch.randn(out, inp, generator=gen) * scale
            if has_bias(cfg, proj):
                w[f"{p}{mod}.{proj}.bias"] = torch.randn(out, generator=gen) * 0.1
    w["model.norm.weight"] = 1 + 0.1 * torch.randn(h, generator=gen)
    if not cfg.get("tie_word_embeddings", False):
        w["lm_head.weight"] = torch.randn(v, h, generator=gen) * scale
    return w


def write_model_dir(path, cfg, weights, dtype=torch.float32):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    save({k: t.to(dtype) for k, t in weights.items()}, os.path.join(path, "model.safetensors"))


def random_adapter(cfg, targets, r, gen):
    a = {}
    for l in range(cfg["num_hidden_layers"]):
        for proj in targets:
            out, inp = proj_shape(cfg, proj)
            name = f"base_model.model.model.layers.{l}.{PROJ[proj]}.{proj}"
            a[name + ".lora_A.weight"] = torch.randn(r, inp, generator=gen) / math.sqrt(inp)
            a[name + ".lora_B.weight"] = torch.randn(out, r, generator=gen) * 0.1
    return a


def write_adapter_dir(path, targets, r, alpha, rslora, tensors):
    os.makedirs(path, exist_ok=True)
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha,
           "lora_dropout": 0.0, "target_modules": targets, "use_rslora": rslora, "bias": "none",
           "base_model_name_or_path": "test", "fan_in_fan_out": False}
    with open(os.path.join(path, "adapter_config.json"), "w") as f:
        json.dump(cfg, f)
    save(tensors, os.path.join(path, "adapter_model.safetensors"))


def inv_freq(cfg):
    """As transformers' rope init functions compute it (f32), including llama3 scaling."""
    hd = head_dim(cfg)
    params = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    base = params.get("rope_theta", cfg.get("rope_theta", 10000.0))
    inv = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "linear":
        inv = inv / params["factor"]
    elif kind == "llama3":
        factor, low, high = params["factor"], params["low_freq_factor"], params["high_freq_factor"]
        old = params["original_max_position_embeddings"]
        low_wl, high_wl = old / low, old / high
        wl = 2 * math.pi / inv
        llama = torch.where(wl > low_wl, inv / factor, inv)
        smooth = (old / wl - low) / (high - low)
        smoothed = (1 - smooth) * llama / factor + smooth * llama
        medium = ~(wl < high_wl) * ~(wl > low_wl)
        inv = torch.where(medium, smoothed, llama)
    return inv


def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Reference:
    """Float64 forward of one sequence. params: dict name -> float64 tensor (requires_grad as the
    caller wants). lora: None or (dict name -> tensor, scale)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.hd = head_dim(cfg)
        self.nh = cfg["num_attention_heads"]
        self.nkv = cfg.get("num_key_value_heads") or self.nh
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.inv = inv_freq(cfg)

    def linear(self, x, params, lora, l, proj):
        name = f"model.layers.{l}.{PROJ[proj]}.{proj}"
        y = x @ params[name + ".weight"].T
        if name + ".bias" in params:
            y = y + params[name + ".bias"]
        if lora is not None:
            tensors, scale = lora
            key = f"base_model.model.{name}"
            if key + ".lora_A.weight" in tensors:
                y = y + scale * ((x @ tensors[key + ".lora_A.weight"].T) @ tensors[key + ".lora_B.weight"].T)
        return y

    def mlp(self, h, params, lora, l):
        """The feed-forward block of layer l on the normed hidden states h [T, H] (subclasses
        replace it, e.g. tests/tools/moe_reference.py's mixture of experts)."""
        g = self.linear(h, params, lora, l, "gate_proj")
        u = self.linear(h, params, lora, l, "up_proj")
        return self.linear(torch.nn.functional.silu(g) * u, params, lora, l, "down_proj")

    def forward(self, ids, params, lora=None):
        cfg, hd, nh, nkv = self.cfg, self.hd, self.nh, self.nkv
        t = len(ids)
        x = params["model.embed_tokens.weight"][torch.tensor(ids)]
        # HF: freqs computed in f32, cos/sin then cast to the activation dtype.
        freqs = torch.arange(t, dtype=torch.float32)[:, None] * self.inv[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().double()[:, None, :], emb.sin().double()[:, None, :]
        mask = torch.full((t, t), float("-inf"), dtype=torch.float64).triu(1)
        for l in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{l}."
            h = rms_norm(x, params[p + "input_layernorm.weight"], self.eps)
            q = self.linear(h, params, lora, l, "q_proj").view(t, nh, hd)
            k = self.linear(h, params, lora, l, "k_proj").view(t, nkv, hd)
            v = self.linear(h, params, lora, l, "v_proj").view(t, nkv, hd)
            if p + "self_attn.q_norm.weight" in params:
                q = rms_norm(q, params[p + "self_attn.q_norm.weight"], self.eps)
                k = rms_norm(k, params[p + "self_attn.k_norm.weight"], self.eps)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            rep = nh // nkv
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
            scores = torch.einsum("thd,shd->hts", q, k) * hd ** -0.5 + mask
            att = torch.einsum("hts,shd->thd", torch.softmax(scores, dim=-1), v).reshape(t, nh * hd)
            x = x + self.linear(att, params, lora, l, "o_proj")
            h = rms_norm(x, params[p + "post_attention_layernorm.weight"], self.eps)
            x = x + self.mlp(h, params, lora, l)
        x = rms_norm(x, params["model.norm.weight"], self.eps)
        head = params.get("lm_head.weight", params["model.embed_tokens.weight"])
        return x @ head.T

    def loss_sum(self, logits, labels):
        """Σ of token losses and the count, HF causal-LM shift, −100 ignored."""
        target = torch.tensor(labels[1:])
        keep = target != -100
        if keep.sum() == 0:
            return logits.sum() * 0, 0
        lp = torch.log_softmax(logits[:-1][keep], dim=-1)
        return -lp.gather(1, target[keep][:, None]).sum(), int(keep.sum())
