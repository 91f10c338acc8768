#!/usr/bin/python3
"""Converts a SentencePiece Unigram .model to tokenizer.json as transformers' T5Converter
(convert_slow_tokenizer.py, SpmConverter + T5Converter) does, without protobuf or tokenizers:
the ModelProto wire format is read by hand (only the fields the converter uses).

  spm_to_tokenizer_json.py MODEL OUT.json [--extra-ids N] [--old-format] [--handle-byte-fallback]

Default (newest converter): normalizer Sequence[Precompiled, Strip(right), Replace(" {2,}", "▁")],
pre-tokenizer and decoder Metaspace(prepend_scheme "always", split), post-processor `$A </s>`,
vocab = pieces + <extra_id_{N-1}> ... <extra_id_0> (score 0), byte_fallback false (T5Converter
does not handle it). --old-format writes the layout of older hub files (Precompiled normalizer;
Sequence[WhitespaceSplit, Metaspace(add_prefix_space)]). --handle-byte-fallback keeps the model's
byte_fallback and uses the ByteFallback decoder chain of the converters that handle it (Llama's).
"""
import argparse
import base64
import json
import struct

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def read_varint(buf, pos):
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def fields(buf):
    """Yields (field number, wire type, value) of one message; value is int or bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, pos = read_varint(buf, pos)
        elif wt == 1:
            v, pos = buf[pos:pos + 8], pos + 8
        elif wt == 2:
            n, pos = read_varint(buf, pos)
            v, pos = buf[pos:pos + n], pos + n
        elif wt == 5:
            v, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        if pos > len(buf):
            raise ValueError("truncated field")
        yield num, wt, v


def parse_model(data):
    m = {"pieces": [], "model_type": 1, "unk_id": 0, "byte_fallback": False,
         "precompiled_charsmap": b"", "add_dummy_prefix": True}
    for num, wt, v in fields(data):
        if num == 1 and wt == 2:
            piece = {"piece": "", "score": 0.0, "type": NORMAL}
            for n2, w2, v2 in fields(v):
                if n2 == 1 and w2 == 2:
                    piece["piece"] = v2.decode("utf-8")
                elif n2 == 2 and w2 == 5:
                    piece["score"] = struct.unpack("<f", v2)[0]
                elif n2 == 3 and w2 == 0:
                    piece["type"] = v2
            m["pieces"].append(piece)
        elif num == 2 and wt == 2:  # TrainerSpec
            for n2, w2, v2 in fields(v):
                if n2 == 3 and w2 == 0:
                    m["model_type"] = v2
                elif n2 == 35 and w2 == 0:
                    m["byte_fallback"] = bool(v2)
                elif n2 == 40 and w2 == 0:
                    m["unk_id"] = v2 - (1 << 64) if v2 >= 1 << 63 else v2
        elif num == 3 and wt == 2:  # NormalizerSpec
            for n2, w2, v2 in fields(v):
                if n2 == 2 and w2 == 2:
                    m["precompiled_charsmap"] = bytes(v2)
                elif n2 == 3 and w2 == 0:
                    m["add_dummy_prefix"] = bool(v2)
    return m


def added(id_, content, special):
    return {"id": id_, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": False, "special": special}


def convert(m, extra_ids, old_format, handle_byte_fallback):
    if m["model_type"] != 1:
        raise SystemExit("only Unigram SentencePiece models are supported")
    vocab = [[p["piece"], p["score"]] for p in m["pieces"]]
    extra = [f"<extra_id_{i}>" for i in range(extra_ids - 1, -1, -1)]
    base = len(vocab)
    vocab += [[t, 0.0] for t in extra]
    # Control and user-defined pieces become added tokens (SpmConverter.tokenizer); the unk
    # piece and the extra ids are added as special tokens by T5TokenizerFast.
    added_tokens = []
    for i, p in enumerate(m["pieces"]):
        if p["type"] in (CONTROL, UNKNOWN, USER_DEFINED):
            added_tokens.append(added(i, p["piece"], p["type"] != USER_DEFINED))
    added_tokens += [added(base + i, t, True) for i, t in enumerate(extra)]
    charsmap = base64.b64encode(m["precompiled_charsmap"]).decode("ascii")
    byte_fallback = m["byte_fallback"] and handle_byte_fallback
    model = {"type": "Unigram", "unk_id": m["unk_id"], "vocab": vocab}
    if not old_format:
        model["byte_fallback"] = byte_fallback
    eos = next(i for i, p in enumerate(m["pieces"]) if p["piece"] == "</s>")
    seq = lambda s: {"Sequence": {"id": s, "type_id": 0}}  # noqa: E731
    tok = lambda t: {"SpecialToken": {"id": t, "type_id": 0}}  # noqa: E731
    post = {"type": "TemplateProcessing", "single": [seq("A"), tok("</s>")],
            "pair": [seq("A"), tok("</s>"), seq("B"), tok("</s>")],
            "special_tokens": {"</s>": {"id": "</s>", "ids": [eos], "tokens": ["</s>"]}}}
    if old_format:
        normalizer = {"type": "Precompiled", "precompiled_charsmap": charsmap}
        meta = {"type": "Metaspace", "replacement": "\u2581", "str_rep": "\u2581",
                "add_prefix_space": True}
        pre = {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, meta]}
        decoder = meta
    else:
        norms = [{"type": "Strip", "strip_left": False, "strip_right": True},
                 {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": "\u2581"}]
        if m["precompiled_charsmap"]:
            norms.insert(0, {"type": "Precompiled", "precompiled_charsmap": charsmap})
        normalizer = {"type": "Sequence", "normalizers": norms}
        pre = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
               "split": True}
        decoder = dict(pre)
        if byte_fallback:
            decoder = {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added_tokens,
            "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": post,
            "decoder": decoder, "model": model}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--extra-ids", type=int, default=100)
    ap.add_argument("--old-format", action="store_true")
    ap.add_argument("--handle-byte-fallback", action="store_true")
    a = ap.parse_args()
    with open(a.model, "rb") as f:
        m = parse_model(f.read())
    tj = convert(m, a.extra_ids, a.old_format, a.handle_byte_fallback)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
