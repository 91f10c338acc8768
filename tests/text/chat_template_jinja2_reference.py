#!/usr/bin/env python3
"""Second reference for the chat template parity test: Python's jinja2 set up exactly as
transformers' apply_chat_template sets it up (chat_template_utils._compile_jinja_template), i.e.
the engine whose output fitlm must reproduce. Used when jinja2 is installed.

    chat_template_jinja2_reference.py DIR   reads DIR/cases.jsonl and DIR/models.tsv (written by
                                            tests/js/chat_template_parity.mjs generate) and writes
                                            DIR/<name>.jinja2.jsonl
"""
import json
import sys
from datetime import datetime
from pathlib import Path

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

SPECIAL = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.now().strftime(fmt)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                       extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def token_text(v):
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and isinstance(v.get("content"), str):
        return v["content"]
    return None


def main(work):
    work = Path(work)
    cases = [json.loads(l) for l in (work / "cases.jsonl").read_text(encoding="utf-8").splitlines()]
    env = environment()
    for line in (work / "models.tsv").read_text(encoding="utf-8").splitlines():
        name, model_dir = line.split("\t")
        config = json.loads((Path(model_dir) / "tokenizer_config.json").read_text(encoding="utf-8"))
        template = env.from_string(config["chat_template"])
        tokens = {k: token_text(config[k]) for k in SPECIAL if token_text(config.get(k)) is not None}
        extra = [token_text(t) for t in config.get("additional_special_tokens") or []]
        if extra:
            tokens["additional_special_tokens"] = extra
        out = []
        for case in cases:
            kwargs = dict(tokens)
            kwargs.update({k: v for k, v in case.items() if k not in ("messages", "add_generation_prompt")})
            try:
                text = template.render(messages=case["messages"], tools=kwargs.pop("tools", None),
                                       documents=kwargs.pop("documents", None),
                                       add_generation_prompt=case.get("add_generation_prompt", False),
                                       **kwargs)
                out.append(json.dumps(text, ensure_ascii=False))
            except Exception as e:  # the template's own errors are results to compare
                out.append(json.dumps({"error": f"{type(e).__name__}: {e}"}, ensure_ascii=False))
        (work / f"{name}.jinja2.jsonl").write_text("\n".join(out) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1])
