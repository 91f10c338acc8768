"""A float64 PyTorch reference of the Hugging Face mixture-of-experts decoders Mixtral
(MixtralForCausalLM) and Qwen3-MoE (Qwen3MoeForCausalLM), with PEFT LoRA on the attention (and
dense-MLP) projections, the router load-balancing loss, and writers for random-weight model
directories in both on-disk layouts:

  hub  per-expert tensors as the hub checkpoints store them
       Mixtral:   model.layers.N.block_sparse_moe.gate.weight [E,H],
                  model.layers.N.block_sparse_moe.experts.j.{w1,w3}.weight [I,H] (w1 gate, w3 up),
                  model.layers.N.block_sparse_moe.experts.j.w2.weight [H,I]
       Qwen3-MoE: model.layers.N.mlp.gate.weight [E,H],
                  model.layers.N.mlp.experts.j.{gate_proj,up_proj}.weight [I,H],
                  model.layers.N.mlp.experts.j.down_proj.weight [H,I]
  v5   transformers 5's fused experts (both architectures)
                  model.layers.N.mlp.gate.weight [E,H],
                  model.layers.N.mlp.experts.gate_up_proj [E,2I,H] (gate rows, then up rows),
                  model.layers.N.mlp.experts.down_proj [E,H,I]

The "internal" names are the v5 names (what fitlm reports gradients under, whatever the layout
loaded). Everything but the feed-forward block is tests/tools/hf_reference.py's Reference (this
subclasses it and replaces Reference.mlp on the sparse layers). Semantics follow transformers
(mixtral/modular_mixtral.py, qwen3_moe/modeling_qwen3_moe.py, FORMATS.md section 9):
router logits = h @ Wr^T; p = softmax(logits); w, idx = topk(p, k); Mixtral always renormalises
w, Qwen3-MoE only with norm_topk_prob; out = sum_j w_j * expert_{idx_j}(h),
expert(h) = down(silu(gate(h)) * up(h)).

`python3 moe_reference.py` runs self_check(): the reference checked against independent
computations (transformers is not available here)."""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference as ref  # noqa: E402

MIXTRAL = "MixtralForCausalLM"
QWEN3_MOE = "Qwen3MoeForCausalLM"


def arch(cfg):
    return cfg["architectures"][0]


def num_experts(cfg):
    return cfg["num_local_experts"] if arch(cfg) == MIXTRAL else cfg.get("num_experts", 0)


def top_k(cfg):
    return cfg["num_experts_per_tok"]


def expert_width(cfg):
    """The expert FFN width: Mixtral's intermediate_size, Qwen3-MoE's moe_intermediate_size."""
    return cfg["intermediate_size"] if arch(cfg) == MIXTRAL else cfg["moe_intermediate_size"]


def renormalize(cfg):
    return True if arch(cfg) == MIXTRAL else bool(cfg.get("norm_topk_prob", False))


def is_sparse(cfg, l):
    if arch(cfg) == MIXTRAL:
        return True
    return (l not in cfg.get("mlp_only_layers", []) and num_experts(cfg) > 0
            and (l + 1) % cfg.get("decoder_sparse_step", 1) == 0)


def sparse_layers(cfg):
    return [l for l in range(cfg["num_hidden_layers"]) if is_sparse(cfg, l)]


def dense_equivalent_cfg(cfg):
    """The dense config whose attention/norm/dense-MLP tensors hf_reference generates alike."""
    c = dict(cfg)
    if arch(cfg) == MIXTRAL:
        c["architectures"] = ["MistralForCausalLM"]  # no biases, no q/k norm
    else:
        c["architectures"] = ["Qwen3ForCausalLM"]  # q/k norm; attention_bias as configured
        c["mlp_bias"] = False
    return c


# ---- names ---------------------------------------------------------------------------------

def router_name(cfg, l, layout):
    if layout == "hub" and arch(cfg) == MIXTRAL:
        return f"model.layers.{l}.block_sparse_moe.gate.weight"
    return f"model.layers.{l}.mlp.gate.weight"


def fused_names(l):
    p = f"model.layers.{l}.mlp.experts."
    return p + "gate_up_proj", p + "down_proj"


def hub_expert_names(cfg, l, j):
    """(gate, up, down) weight names of expert j of layer l in the hub layout."""
    if arch(cfg) == MIXTRAL:
        p = f"model.layers.{l}.block_sparse_moe.experts.{j}."
        return p + "w1.weight", p + "w3.weight", p + "w2.weight"
    p = f"model.layers.{l}.mlp.experts.{j}."
    return p + "gate_proj.weight", p + "up_proj.weight", p + "down_proj.weight"


def to_layout(weights, cfg, layout):
    """Internal (v5-named) weights -> the names and shapes of the given on-disk layout."""
    if layout == "v5":
        return dict(weights)
    out, moe = {}, set()
    i = expert_width(cfg)
    for l in sparse_layers(cfg):
        gu_name, down_name = fused_names(l)
        r_name = router_name(cfg, l, "v5")
        moe |= {gu_name, down_name, r_name}
        out[router_name(cfg, l, "hub")] = weights[r_name]
        for j in range(num_experts(cfg)):
            g, u, d = hub_expert_names(cfg, l, j)
            out[g] = weights[gu_name][j, :i].clone()
            out[u] = weights[gu_name][j, i:].clone()
            out[d] = weights[down_name][j].clone()
    for k, v in weights.items():
        if k not in moe:
            out[k] = v
    return out


def to_internal(tensors, cfg, layout):
    """On-disk-named tensors (weights or their gradients) -> internal (v5) names: per-expert
    tensors are stacked (gate rows then up rows); a None (an expert no token reached, whose
    weights autograd never saw) counts as zeros."""
    if layout == "v5":
        return dict(tensors)
    out, moe = {}, set()
    h, i, e = cfg["hidden_size"], expert_width(cfg), num_experts(cfg)

    def get(name, shape):
        t = tensors[name]
        return torch.zeros(shape, dtype=torch.float64) if t is None else t

    for l in sparse_layers(cfg):
        gu_name, down_name = fused_names(l)
        rn = router_name(cfg, l, "hub")
        moe.add(rn)
        out[router_name(cfg, l, "v5")] = get(rn, (e, h))
        gu, dn = [], []
        for j in range(e):
            g, u, d = hub_expert_names(cfg, l, j)
            moe |= {g, u, d}
            gu.append(torch.cat([get(g, (i, h)), get(u, (i, h))], dim=0))
            dn.append(get(d, (h, i)))
        out[gu_name] = torch.stack(gu)
        out[down_name] = torch.stack(dn)
    for k, v in tensors.items():
        if k not in moe:
            out[k] = v
    return out


# ---- random models -------------------------------------------------------------------------

def random_weights(cfg, gen, scale=0.2):
    """Random weights under the internal (v5) names: hf_reference's attention, norms, embeddings
    and (for dense layers) MLP, then a router and fused experts for every sparse layer."""
    w = ref.random_weights(dense_equivalent_cfg(cfg), gen, scale)
    h, i, e = cfg["hidden_size"], expert_width(cfg), num_experts(cfg)
    for l in sparse_layers(cfg):
        for proj in ("gate_proj", "up_proj", "down_proj"):
            del w[f"model.layers.{l}.mlp.{proj}.weight"]
        gu_name, down_name = fused_names(l)
        w[router_name(cfg, l, "v5")] = torch.randn(e, h, generator=gen) * scale
        w[gu_name] = torch.randn(e, 2 * i, h, generator=gen) * scale
        w[down_name] = torch.randn(e, h, i, generator=gen) * scale
    return w


def ref_random_adapter(cfg, targets, r, gen):
    """PEFT LoRA tensors for the targets that exist as Linear modules: q/k/v/o_proj on every
    layer, gate/up/down_proj only on dense layers (sparse layers have no such Linear)."""
    a = {}
    for l in range(cfg["num_hidden_layers"]):
        for proj in targets:
            if ref.PROJ[proj] == "mlp" and is_sparse(cfg, l):
                continue
            out, inp = ref.proj_shape(cfg, proj)  # intermediate_size: the dense MLP's width
            name = f"base_model.model.model.layers.{l}.{ref.PROJ[proj]}.{proj}"
            a[name + ".lora_A.weight"] = torch.randn(r, inp, generator=gen) / math.sqrt(inp)
            a[name + ".lora_B.weight"] = torch.randn(out, r, generator=gen) * 0.1
    return a


# LoRA on the router and experts, in fitlm's target names (lora_target_modules), in the order
# fitlm writes PEFT's target_parameters.
MOE_TARGETS = ("router", "experts.gate_up_proj", "experts.down_proj")
PEFT_PARAMETER = {"router": "gate.weight", "experts.gate_up_proj": "mlp.experts.gate_up_proj",
                  "experts.down_proj": "mlp.experts.down_proj"}


def moe_lora_module(l, target, moe_targets):
    """PEFT 0.21's module path of a router/experts adapter (bench/NOTES.md): the router's
    ParamWrapper is mlp.gate; the experts' wrappers nest, so with both expert tensors targeted
    the first listed (gate_up_proj) sits under base_layer."""
    p = f"base_model.model.model.layers.{l}.mlp."
    if target == "router":
        return p + "gate"
    nested = target == "experts.gate_up_proj" and "experts.down_proj" in moe_targets
    return p + "experts" + (".base_layer" if nested else "")


def moe_lora_dims(cfg, target):
    """(out, in) of one expert's (or the router's) weight that the adapter changes."""
    h, i, e = cfg["hidden_size"], expert_width(cfg), num_experts(cfg)
    return {"router": (e, h), "experts.gate_up_proj": (2 * i, h),
            "experts.down_proj": (h, i)}[target]


def random_adapter(cfg, targets, r, gen, moe_targets=()):
    """PEFT LoRA tensors: the Linear targets (ref_random_adapter), then for every sparse layer the
    router's A [r, H], B [E, r] and each expert target's A [r·E, in], B [out, r·E] (PEFT's
    layout: A rows expert-major, B columns rank-major)."""
    a = ref_random_adapter(cfg, targets, r, gen)
    e = num_experts(cfg)
    for l in sparse_layers(cfg):
        for t in moe_targets:
            out, inp = moe_lora_dims(cfg, t)
            n = 1 if t == "router" else e
            name = moe_lora_module(l, t, moe_targets)
            a[name + ".lora_A.weight"] = torch.randn(r * n, inp, generator=gen) / math.sqrt(inp)
            a[name + ".lora_B.weight"] = torch.randn(out, r * n, generator=gen) * 0.1
    return a


def expert_delta(a, b, e, scale):
    """ΔW [E, out, in] of an expert target from PEFT's A [r·E, in] and B [out, r·E]."""
    out, inp, r = b.shape[0], a.shape[1], a.shape[0] // e
    return torch.einsum("ore,eri->eoi", b.reshape(out, r, e), a.reshape(e, r, inp)) * scale


def write_adapter_dir(path, targets, r, alpha, rslora, tensors, moe_targets=()):
    """hf_reference's adapter directory, with PEFT's target_parameters for the router and
    experts (as PEFT writes them: the router as "gate.weight")."""
    ref.write_adapter_dir(path, targets, r, alpha, rslora, tensors)
    if moe_targets:
        cfg_path = os.path.join(path, "adapter_config.json")
        with open(cfg_path) as f:
            c = json.load(f)
        c["target_parameters"] = [PEFT_PARAMETER[t] for t in MOE_TARGETS if t in moe_targets]
        if not targets:  # as PEFT writes a config with target parameters only
            c["target_modules"] = None
        with open(cfg_path, "w") as f:
            json.dump(c, f)


write_model_dir = ref.write_model_dir


# ---- forward -------------------------------------------------------------------------------

def load_balancing_loss(router_logits, e, k):
    """transformers' load_balancing_loss_func without an attention mask: router_logits is a list
    of [T_i, E] tensors (all sparse layers, all rows), concatenated."""
    logits = torch.cat(router_logits, dim=0)
    p = torch.softmax(logits, dim=-1)
    idx = torch.topk(p, k, dim=-1).indices
    m = torch.nn.functional.one_hot(idx, e).to(p.dtype)  # [N, k, E]
    f = m.mean(dim=0)  # [k, E]
    prob = p.mean(dim=0)  # [E]
    return e * (f * prob[None, :]).sum()


def topk_margin(router_logits, k):
    """Smallest gap, over all tokens, between the k-th and (k+1)-th router logit (how far the
    routing is from a tie; inf when k = E)."""
    logits = torch.cat(router_logits, dim=0).detach()
    if k >= logits.shape[1]:
        return math.inf
    s = torch.sort(logits, dim=-1, descending=True).values
    return float((s[:, k - 1] - s[:, k]).min())


class MoEReference(ref.Reference):
    """Float64 forward of one sequence of a Mixtral / Qwen3-MoE model. params: on-disk-named
    float64 tensors of `layout` ("hub" or "v5"). After forward(), self.router_logits holds the
    [T, E] router logits of each sparse layer, in layer order."""

    def __init__(self, cfg, layout):
        super().__init__(cfg)
        assert layout in ("hub", "v5")
        self.layout = layout
        self.e, self.k, self.renorm = num_experts(cfg), top_k(cfg), renormalize(cfg)
        self.router_logits = []

    def expert(self, x, params, l, j, delta=(None, None)):
        """delta: the adapter's ΔW of gate_up [E, 2I, H] and down [E, H, I] (or None), added to
        the weights as PEFT's ParamWrapper does."""
        if self.layout == "hub":
            g, u, d = hub_expert_names(self.cfg, l, j)
            gate, up, down = params[g], params[u], params[d]
        else:
            gu_name, down_name = fused_names(l)
            gu = params[gu_name][j]
            gate, up = gu.chunk(2, dim=0)
            down = params[down_name][j]
        if delta[0] is not None:
            dg, du = delta[0][j].chunk(2, dim=0)
            gate, up = gate + dg, up + du
        if delta[1] is not None:
            down = down + delta[1][j]
        return (torch.nn.functional.silu(x @ gate.T) * (x @ up.T)) @ down.T

    def moe_lora(self, lora, l, target):
        """(A, B) of layer l's router/experts adapter, whichever nesting its name has. Without
        nesting gate_up_proj's and down_proj's names are the same (mlp.experts.lora_A): the
        shapes tell them apart (the test models have 2·I ≠ H)."""
        if lora is None:
            return None
        out, inp = moe_lora_dims(self.cfg, target)
        for nested in (True, False):
            targets = MOE_TARGETS if nested else (target,)
            key = moe_lora_module(l, target, targets)
            if key + ".lora_A.weight" in lora[0]:
                a, b = lora[0][key + ".lora_A.weight"], lora[0][key + ".lora_B.weight"]
                if a.shape[1] == inp and b.shape[0] == out:
                    return a, b
        return None

    def route(self, logits):
        p = torch.softmax(logits, dim=-1)
        w, idx = torch.topk(p, self.k, dim=-1)
        if self.renorm:
            w = w / w.sum(dim=-1, keepdim=True)
        return w, idx

    def mlp(self, h, params, lora, l):
        if not is_sparse(self.cfg, l):
            return super().mlp(h, params, lora, l)
        logits = h @ params[router_name(self.cfg, l, self.layout)].T
        router = self.moe_lora(lora, l, "router")
        if router is not None:
            logits = logits + lora[1] * ((h @ router[0].T) @ router[1].T)
        delta = []
        for t in ("experts.gate_up_proj", "experts.down_proj"):
            ab = self.moe_lora(lora, l, t)
            delta.append(None if ab is None else expert_delta(ab[0], ab[1], self.e, lora[1]))
        self.router_logits.append(logits)
        w, idx = self.route(logits)
        out = torch.zeros_like(h)
        # As transformers v4's sparse block: each expert runs on the tokens routed to it (an
        # expert no token reached is not run at all), weighted, then index-added.
        for j in range(self.e):
            tok, slot = torch.where(idx == j)
            if len(tok) == 0:
                continue
            y = self.expert(h[tok], params, l, j, tuple(delta)) * w[tok, slot, None]
            out = out.index_add(0, tok, y)
        return out

    def forward(self, ids, params, lora=None):
        self.router_logits = []
        return super().forward(ids, params, lora)


# ---- self-check ----------------------------------------------------------------------------

def _tiny_cfg(a, **kw):
    cfg = {"architectures": [a], "vocab_size": 37, "hidden_size": 16, "intermediate_size": 20,
           "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
           "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "hidden_act": "silu",
           "tie_word_embeddings": False}
    if a == MIXTRAL:
        cfg.update(num_local_experts=4, num_experts_per_tok=2)
    else:
        cfg.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=12, head_dim=8,
                   norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[])
    cfg.update(kw)
    return cfg


def _rel(a, b):
    return float((a - b).norm() / max(float(b.norm()), 1e-300))


def self_check():
    """Checks the reference against computations that do not share its code path. Returns a
    list of failure messages (empty when all pass)."""
    fails = []

    def expect(ok, msg):
        if not ok:
            fails.append(msg)

    # 1. Layer choice (FORMATS.md section 9) on a hand-made table.
    c = _tiny_cfg(QWEN3_MOE, num_hidden_layers=6, decoder_sparse_step=2, mlp_only_layers=[3])
    expect(sparse_layers(c) == [1, 5], f"sparse layers {sparse_layers(c)} != [1, 5]")
    c = _tiny_cfg(QWEN3_MOE, num_hidden_layers=3, mlp_only_layers=[1])
    expect(sparse_layers(c) == [0, 2], f"sparse layers {sparse_layers(c)} != [0, 2]")
    c = _tiny_cfg(QWEN3_MOE, num_experts=0)
    expect(sparse_layers(c) == [], "num_experts 0 must give dense layers")
    c = _tiny_cfg(MIXTRAL, num_hidden_layers=3, mlp_only_layers=[1], decoder_sparse_step=2)
    expect(sparse_layers(c) == [0, 1, 2], "Mixtral layers are all sparse")
    expect(renormalize(_tiny_cfg(MIXTRAL, norm_topk_prob=False)), "Mixtral always renormalises")

    # 2. Aux loss on hand-computed examples. E=2, k=1, logits -> p rows (.75,.25), (.25,.75):
    # f = [[.5,.5]], P = [.5,.5], L = 2 * (.25 + .25) = 1.
    l3 = math.log(3.0)
    lg = torch.tensor([[l3, 0.0], [0.0, l3]], dtype=torch.float64)
    v = float(load_balancing_loss([lg], 2, 1))
    expect(abs(v - 1.0) < 1e-12, f"aux balanced example {v} != 1")
    # Both rows to expert 0: p = (.75,.25), (.6,.4); f = [[1,0]], P = [.675,.325]; L = 1.35.
    # Split over two "layers" (the concatenation must not matter).
    lg = [torch.tensor([[l3, 0.0]], dtype=torch.float64),
          torch.tensor([[math.log(1.5), 0.0]], dtype=torch.float64, requires_grad=True)]
    aux = load_balancing_loss(lg, 2, 1)
    expect(abs(float(aux) - 1.35) < 1e-12, f"aux skewed example {float(aux)} != 1.35")
    # Gradient only through P: dL/dlogit_row = (E/N) * J_softmax(row)^T (sum_k f[k,:]);
    # row 2: p = (.6,.4), J^T [1,0] = p0 * ([1,0] - p) = .6 * (.4, -.4); times E/N = 1.
    aux.backward()
    expect(_rel(lg[1].grad, torch.tensor([[0.24, -0.24]], dtype=torch.float64)) < 1e-12,
           f"aux gradient {lg[1].grad.tolist()} != [[0.24, -0.24]]")
    # E=3, k=2, two rows: p1 = (.5,.3,.2) -> top {0,1}; p2 = (.1,.6,.3) -> top {1,2}.
    # f[0] (first choices) = (.5,.5,0), f[1] (second) = (0,.5,.5); P = (.3,.45,.25);
    # L = 3 * (.5*.3 + .5*.45 + .5*.45 + .5*.25) = 3 * .725 = 2.175.
    p = torch.tensor([[.5, .3, .2], [.1, .6, .3]], dtype=torch.float64)
    v = float(load_balancing_loss([p.log()], 3, 2))
    expect(abs(v - 2.175) < 1e-12, f"aux top-2 example {v} != 2.175")

    gen = torch.Generator().manual_seed(7)
    h = torch.randn(5, 16, generator=gen, dtype=torch.float64)

    def dense(x, g, u, d):
        return (torch.nn.functional.silu(x @ g.T) * (x @ u.T)) @ d.T

    # 3. All experts identical: Mixtral (renormalised) equals the dense MLP; Qwen3-MoE without
    # norm_topk_prob equals the sum of the top-k probabilities times the dense MLP.
    for a in (MIXTRAL, QWEN3_MOE):
        for layout in ("hub", "v5"):
            cfg = _tiny_cfg(a)
            w = {k: t.double() for k, t in random_weights(cfg, gen).items()}
            gu, dn = fused_names(0)
            w[gu] = w[gu][:1].expand_as(w[gu]).clone()
            w[dn] = w[dn][:1].expand_as(w[dn]).clone()
            m = MoEReference(cfg, layout)
            out = m.mlp(h, to_layout(w, cfg, layout), None, 0)
            i = expert_width(cfg)
            want = dense(h, w[gu][0, :i], w[gu][0, i:], w[dn][0])
            if a == QWEN3_MOE:
                pr = torch.softmax(h @ w[router_name(cfg, 0, "v5")].T, dim=-1)
                want = want * torch.topk(pr, 2, dim=-1).values.sum(-1, keepdim=True)
            err = _rel(out, want)
            expect(err < 1e-12, f"identical experts {a} {layout}: {err:.1e}")

    # 4. top-k = E: renormalised, it is the probability-weighted sum of all experts; one token
    # at a time by explicit loops (top-k by sorting, no torch.topk) for k < E.
    for a, extra in ((MIXTRAL, {}), (QWEN3_MOE, {"norm_topk_prob": True})):
        for k in (1, 3, 4):
            key = "num_experts_per_tok"
            cfg = _tiny_cfg(a, **{key: k}, **extra)
            w = {n: t.double() for n, t in random_weights(cfg, gen).items()}
            gu, dn = fused_names(0)
            wr = w[router_name(cfg, 0, "v5")]
            i = expert_width(cfg)
            for layout in ("hub", "v5"):
                out = MoEReference(cfg, layout).mlp(h, to_layout(w, cfg, layout), None, 0)
                rows = []
                for t in range(h.shape[0]):
                    pr = torch.softmax(h[t] @ wr.T, dim=0).tolist()
                    chosen = sorted(range(4), key=lambda e: -pr[e])[:k]
                    z = sum(pr[e] for e in chosen)
                    rows.append(sum(pr[e] / z * dense(h[t:t + 1], w[gu][e, :i], w[gu][e, i:],
                                                      w[dn][e])[0] for e in chosen))
                want = torch.stack(rows)
                expect(_rel(out, want) < 1e-12, f"top-{k} {a} {layout}: {_rel(out, want):.1e}")

    # 5. Whole model: hub and v5 layouts give the same logits and, converted, the same gradients;
    # a Qwen3-MoE with every layer in mlp_only_layers equals hf_reference's dense Qwen3.
    for a in (MIXTRAL, QWEN3_MOE):
        extra = {"mlp_only_layers": [1]} if a == QWEN3_MOE else {}
        cfg = _tiny_cfg(a, num_hidden_layers=3, **extra)
        w = {n: t.double() for n, t in random_weights(cfg, gen).items()}
        ids = torch.randint(0, cfg["vocab_size"], (7,), generator=gen).tolist()
        res = {}
        for layout in ("hub", "v5"):
            params = {n: t.clone().requires_grad_(True)
                      for n, t in to_layout(w, cfg, layout).items()}
            m = MoEReference(cfg, layout)
            lg = m.forward(ids, params)
            loss = m.loss_sum(lg, ids)[0] + 0.1 * load_balancing_loss(m.router_logits, m.e, m.k)
            loss.backward()
            grads = to_internal({n: t.grad for n, t in params.items()}, cfg, layout)
            res[layout] = (lg.detach(), grads)
        expect(_rel(res["hub"][0], res["v5"][0]) < 1e-12, f"{a}: hub and v5 logits differ")
        for n, g in res["v5"][1].items():
            expect(_rel(res["hub"][1][n], g) < 1e-12, f"{a}: hub and v5 grad {n} differ")
    cfg = _tiny_cfg(QWEN3_MOE, mlp_only_layers=[0, 1])
    w = {n: t.double() for n, t in random_weights(cfg, gen).items()}
    ids = torch.randint(0, cfg["vocab_size"], (6,), generator=gen).tolist()
    got = MoEReference(cfg, "hub").forward(ids, w)
    want = ref.Reference(dense_equivalent_cfg(cfg)).forward(ids, w)
    expect(torch.equal(got, want), "all-dense Qwen3-MoE differs from hf_reference's Qwen3")

    # 6. Expert LoRA: the einsum ΔW equals each expert's rank-r product written out with PEFT's
    # layout by index (A row e·r + j, B column j·E + e), and the adapted expert equals the base
    # expert plus s·(x·A_eᵀ)·B_eᵀ on its gate, up and down pre-activations.
    e, r, out, inp, s = 3, 2, 5, 4, 1.5
    a = torch.randn(r * e, inp, generator=gen, dtype=torch.float64)
    b = torch.randn(out, r * e, generator=gen, dtype=torch.float64)
    loops = torch.zeros(e, out, inp, dtype=torch.float64)
    for x in range(e):
        for o in range(out):
            for i_ in range(inp):
                loops[x, o, i_] = s * sum(b[o, j * e + x] * a[x * r + j, i_] for j in range(r))
    expect(_rel(expert_delta(a, b, e, s), loops) < 1e-12, "expert ΔW einsum != index formula")
    cfg = _tiny_cfg(QWEN3_MOE)
    w = {n: t.double() for n, t in random_weights(cfg, gen).items()}
    targets = ("experts.gate_up_proj", "experts.down_proj")
    lt = {k: v.double() for k, v in random_adapter(cfg, [], 2, gen, targets).items()}
    m = MoEReference(cfg, "v5")
    ga, gb = m.moe_lora((lt, s), 0, "experts.gate_up_proj")
    da, db = m.moe_lora((lt, s), 0, "experts.down_proj")
    gu, dn = fused_names(0)
    i = expert_width(cfg)
    x = h[:3]
    for j in range(m.e):
        got = m.expert(x, w, 0, j, (expert_delta(ga, gb, m.e, s), expert_delta(da, db, m.e, s)))
        u = x @ ga[j * 2:(j + 1) * 2].T
        bg = gb.reshape(2 * i, 2, m.e)[:, :, j]
        g = x @ w[gu][j, :i].T + s * (u @ bg[:i].T)
        up = x @ w[gu][j, i:].T + s * (u @ bg[i:].T)
        act = torch.nn.functional.silu(g) * up
        bd = db.reshape(cfg["hidden_size"], 2, m.e)[:, :, j]
        want = act @ w[dn][j].T + s * ((act @ da[j * 2:(j + 1) * 2].T) @ bd.T)
        expect(_rel(got, want) < 1e-12, f"expert {j} with LoRA != rank-r products")
    return fails


if __name__ == "__main__":
    f = self_check()
    for m in f:
        print("FAIL", m)
    print("moe_reference self-check:", "FAILED" if f else "ok")
    sys.exit(1 if f else 0)
