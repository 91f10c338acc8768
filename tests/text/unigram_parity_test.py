#!/usr/bin/python3
"""Unigram (SentencePiece) tokenizer parity: fitlm's ids on a 3,000-string multilingual corpus
(tests/js/unigram_parity.mjs) against SentencePiece itself (python3-sentencepiece, and the
spm_encode CLI) and transformers.js (@lenml/tokenizers), on the fixtures in
tests/text/fixtures/unigram/ (spm_make_fixture.py): the T5-style model through its
tokenizer.json, through the older hub layout (Sequence[WhitespaceSplit, Metaspace]) and through
the .model file alone, and the byte-fallback model.

Where the references disagree with tokenizers by design, lines are set aside, never silently:
  - SentencePiece matches added tokens ("</s>", "<extra_id_0>") and byte pieces ("<0x41>") as
    text, tokenizers as tokens: lines holding one are not compared with SentencePiece; nor,
    for the model without a charsmap, lines holding U+2581 (see below);
  - tokenizers applies the charsmap per grapheme cluster and strips trailing Unicode
    whitespace, SentencePiece takes the longest rule per position and trims only spaces: a line
    is compared with SentencePiece when both normalizations, re-implemented below from their
    sources (python3-regex's \\X for clusters), give the same text;
  - SentencePiece adds scores in float, tokenizers (and transformers.js) in double: where two
    segmentations score the same (a tie up to rounding) they may pick differently; such lines
    are listed and set aside from the SentencePiece comparison (transformers.js checks them);
  - transformers.js approximates the charsmap with NFKC: a line is compared with it when its
    normalizer output equals the tokenizers-style normalization below.
Each comparison must cover at least 2,000 lines, and every compared line must be equal.
Decoding (skipping specials): fitlm's equals tokenizers' decoders (re-implemented below) on
every line except those where a byte run starts with U+FEFF (fitlm drops it, as
transformers.js's TextDecoder does), and SentencePiece's decode where that agrees with them.
Env: FITLM_BIN, FITLM_TESTS.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import regex
import sentencepiece as spm

TESTS = os.environ.get("FITLM_TESTS") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FITLM = os.environ["FITLM_BIN"]
FIX = os.path.join(TESTS, "text", "fixtures", "unigram")
JS = os.path.join(TESTS, "js")
COUNT = int(os.environ.get("UNIGRAM_PARITY_COUNT", "3000"))
MIN_COMPARED = 2000
META = "\u2581"
# Unicode White_Space (Rust's char::is_whitespace).
WHITE_SPACE = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {
    chr(c) for c in range(0x2000, 0x200B)}

sys.path.insert(0, os.path.join(TESTS, "text"))
from spm_to_tokenizer_json import parse_model  # noqa: E402


def charsmap_rules(model_path):
    """key -> replacement of a model's precompiled charsmap (Darts double-array walk)."""
    with open(model_path, "rb") as f:
        cm = parse_model(f.read())["precompiled_charsmap"]
    if not cm:
        return {}
    n = struct.unpack("<I", cm[:4])[0]
    arr = struct.unpack("<%dI" % (n // 4), cm[4:4 + n])
    norm = cm[4 + n:]
    rules = {}
    stack = [((arr[0] >> 10) << ((arr[0] & (1 << 9)) >> 6), b"")]
    while stack:
        pos, key = stack.pop()
        for c in range(1, 256):
            p = pos ^ c
            if p >= len(arr) or arr[p] & ((1 << 31) | 0xFF) != c:
                continue
            unit = arr[p]
            nxt = p ^ ((unit >> 10) << ((unit & (1 << 9)) >> 6))
            if (unit >> 8) & 1:
                v = arr[nxt] & ((1 << 31) - 1)
                rules[(key + bytes([c])).decode()] = norm[v:norm.index(b"\0", v)].decode()
            stack.append((nxt, key + bytes([c])))
    return rules


class Charsmap:
    def __init__(self, rules):
        self.rules = rules
        self.max_len = max((len(k) for k in rules), default=0)

    def spm(self, s):
        """SentencePiece: the longest rule at each position, else the character."""
        out, i = [], 0
        while i < len(s):
            for n in range(min(self.max_len, len(s) - i), 0, -1):
                if s[i:i + n] in self.rules:
                    out.append(self.rules[s[i:i + n]])
                    i += n
                    break
            else:
                out.append(s[i])
                i += 1
        return "".join(out)

    def shortest(self, g):
        for n in range(1, len(g) + 1):
            if g[:n] in self.rules:
                return self.rules[g[:n]]
        return None

    def hf(self, s):
        """tokenizers: per cluster under 6 bytes the shortest rule prefixing it, else per char."""
        out = []
        for g in regex.findall(r"\X", s):
            r = self.shortest(g) if len(g.encode()) < 6 else None
            if r is not None:
                out.append(r)
                continue
            out.extend(self.rules.get(c, c) for c in g)
        return "".join(out)


def hf_normalizer(cm, s):
    """tokenizers' T5 normalizer Sequence[Precompiled, Strip(right), Replace(" {2,}", "▁")]."""
    t = cm.hf(s)
    while t and t[-1] in WHITE_SPACE:
        t = t[:-1]
    return regex.sub(" {2,}", META, t)


def hf_pipeline(cm, s):
    """hf_normalizer, then Metaspace (prepend "always"; the split pieces joined back)."""
    t = hf_normalizer(cm, s).replace(" ", META)
    return t if not t or t.startswith(META) else META + t


def spm_pipeline(cm, s):
    """SentencePiece: charsmap, remove_extra_whitespaces (spaces, and U+2581 taken as one, only),
    dummy prefix, escape."""
    t = " ".join(w for w in cm.spm(s).replace(META, " ").split(" ") if w)
    return META + t.replace(" ", META) if t else ""


def hf_decode(vocab, added, ids, byte_fallback):
    """tokenizers' decode(skip_special_tokens=True): Metaspace (t5), or Replace("▁", " "),
    ByteFallback, Fuse, Strip(1 leading space) (bf). Also returns whether a byte run began with
    U+FEFF (fitlm drops that one, as transformers.js's TextDecoder does)."""
    toks = [vocab[i] for i in ids if i not in added]
    if not byte_fallback:
        return "".join(t.replace(META, "" if k == 0 else " ") for k, t in enumerate(toks)), False
    out, run_bytes, bom = [], bytearray(), False

    def flush():
        nonlocal bom
        if run_bytes:
            try:
                text = run_bytes.decode("utf-8")
                bom |= text.startswith("\ufeff")
            except UnicodeDecodeError:
                text = "\ufffd" * len(run_bytes)
            out.append(text)
            run_bytes.clear()
    for t in toks:
        t = t.replace(META, " ")
        m = regex.fullmatch(r"<0x([0-9A-F]{2})>", t)
        if m:
            run_bytes.append(int(m.group(1), 16))
        else:
            flush()
            out.append(t)
    flush()
    text = "".join(out)
    return (text[1:] if text.startswith(" ") else text), bom


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def fitlm(model_dir, infile, outfile, *flags):
    with open(outfile, "w") as out:
        run([FITLM, "tokenize", "--model", model_dir, "--file", infile, "--jsonl", *flags],
            stdout=out)
    return read_jsonl(outfile)


failures = []


def compare(what, corpus, expected, actual, keep, minimum=MIN_COMPARED, tie=None):
    lines = [i for i in range(len(corpus)) if keep(i)]
    bad = [i for i in lines if expected[i] != actual[i]]
    if tie:  # equal-score segmentations, which float and double sums break differently
        ties = [i for i in bad if tie(expected[i], actual[i])]
        bad = [i for i in bad if i not in ties]
        lines = [i for i in lines if i not in ties]
        for i in ties:
            print(f"  {what}: line {i + 1} is a tie, set aside: {expected[i]} vs {actual[i]}")
    for i in bad[:5]:
        print(f"  {what} mismatch, line {i + 1}: {json.dumps(corpus[i], ensure_ascii=False)[:200]}"
              f"\n    expected {json.dumps(expected[i], ensure_ascii=False)[:300]}"
              f"\n    fitlm    {json.dumps(actual[i], ensure_ascii=False)[:300]}")
    print(f"{what}: {len(lines) - len(bad)}/{len(lines)} equal ({len(corpus) - len(lines)} set "
          f"aside)")
    if bad:
        failures.append(f"{what}: {len(bad)} mismatches")
    if len(lines) < minimum:
        failures.append(f"{what}: only {len(lines)} lines compared (< {minimum})")


def main():
    if not os.path.isdir(os.path.join(JS, "node_modules", "@lenml", "tokenizers")):
        sys.exit(f"unigram parity: run 'cd {JS} && npm install' first")
    work = tempfile.mkdtemp()
    try:
        run(["node", os.path.join(JS, "unigram_parity.mjs"), "corpus", work, str(COUNT)])
        corpus_file = os.path.join(work, "corpus.jsonl")
        corpus = read_jsonl(corpus_file)
        # The older hub layout, and directories holding only the .model files.
        old = os.path.join(work, "old")
        os.makedirs(old)
        shutil.copy(os.path.join(FIX, "t5", "tokenizer_config.json"), old)
        run([sys.executable, os.path.join(TESTS, "text", "spm_to_tokenizer_json.py"),
             os.path.join(FIX, "t5", "spiece.model"), os.path.join(old, "tokenizer.json"),
             "--old-format"])
        shutil.copy(os.path.join(old, "tokenizer.json"), os.path.join(work, "tokenizer_old.json"))
        spm_only = {}
        for m in ("t5", "bf"):
            spm_only[m] = os.path.join(work, f"{m}_model")
            os.makedirs(spm_only[m])
            for f in ("spiece.model", "tokenizer_config.json"):
                shutil.copy(os.path.join(FIX, m, f), spm_only[m])
        run(["node", os.path.join(JS, "unigram_parity.mjs"), "js", work, FIX])
        js_new = read_jsonl(os.path.join(work, "js.new.ids.jsonl"))
        js_old = read_jsonl(os.path.join(work, "js.old.ids.jsonl"))
        js_norm_new = read_jsonl(os.path.join(work, "js.new.normalized.jsonl"))
        js_norm_old = read_jsonl(os.path.join(work, "js.old.normalized.jsonl"))

        out = lambda name: os.path.join(work, name)  # noqa: E731
        ids = {"t5": fitlm(os.path.join(FIX, "t5"), corpus_file, out("t5.ids")),
               "t5_old": fitlm(old, corpus_file, out("old.ids")),
               "t5_model": fitlm(spm_only["t5"], corpus_file, out("t5m.ids")),
               "bf": fitlm(os.path.join(FIX, "bf"), corpus_file, out("bf.ids")),
               "bf_model": fitlm(spm_only["bf"], corpus_file, out("bfm.ids"))}

        specials = ["</s>", "<pad>", "<unk>", "<extra_id_"]
        no_added = lambda i: not any(t in corpus[i] for t in specials)  # noqa: E731
        compare("t5 .model == t5 tokenizer.json", corpus, ids["t5"], ids["t5_model"],
                lambda i: True)
        compare("bf .model == bf tokenizer.json", corpus, ids["bf"], ids["bf_model"],
                lambda i: True)

        for m, key in (("t5", "t5"), ("bf", "bf")):
            sp = spm.SentencePieceProcessor(model_file=os.path.join(FIX, m, "spiece.model"))
            cm = Charsmap(charsmap_rules(os.path.join(FIX, m, "spiece.model")))
            spm_ids = [sp.encode(s) + [1] for s in corpus]
            same_norm = [hf_pipeline(cm, s) == spm_pipeline(cm, s) for s in corpus]
            # SentencePiece keeps byte pieces out of its trie (tokenizers matches "<0x41>" in
            # text like any piece) and, without a charsmap rule for U+2581 (bf), keeps a "▁" of
            # the text apart from its own dummy prefix (tokenizers' Metaspace sees it as one).
            scores = [sp.get_score(i) if not sp.is_byte(i) else 0.0
                      for i in range(sp.get_piece_size())]
            unk_score = min(scores) - 10  # what an unknown edge scores (unigram.h)
            total = lambda x: sum(unk_score if t == 2 else scores[t] for t in x)  # noqa: E731
            compare(f"{m}: fitlm == sentencepiece", corpus, spm_ids, ids[key],
                    lambda i: no_added(i) and same_norm[i] and
                    not (m == "bf" and ("<0x" in corpus[i] or META in corpus[i])),
                    tie=lambda a, b: abs(total(a) - total(b)) <= 1e-4)
            # The spm_encode CLI (one text per line) gives the library's ids.
            single = [i for i, s in enumerate(corpus) if s == " ".join(s.splitlines())]
            with open(out(f"{m}.txt"), "w", encoding="utf-8") as f:
                f.writelines(corpus[i] + "\n" for i in single)
            cli = run(["spm_encode", f"--model={os.path.join(FIX, m, 'spiece.model')}",
                       "--output_format=id", f"--input={out(m + '.txt')}"],
                      capture_output=True, text=True).stdout.split("\n")
            cli_ids = {i: [int(x) for x in cli[k].split()] + [1] for k, i in enumerate(single)}
            compare(f"{m}: spm_encode CLI == sentencepiece", corpus,
                    {i: spm_ids[i] for i in single}, cli_ids, lambda i: i in cli_ids)
            # Decoding fitlm's ids (specials skipped): tokenizers' decoders (re-implemented
            # above) on every line, and SentencePiece's decode where that agrees with them.
            with open(out(f"{m}.dec.in"), "w") as f:
                f.writelines(json.dumps(x) + "\n" for x in ids[key])
            dec = fitlm(os.path.join(FIX, m), out(f"{m}.dec.in"), out(f"{m}.dec"), "--decode",
                        "--skip-special", "--no-cleanup")
            with open(os.path.join(FIX, m, "tokenizer.json"), encoding="utf-8") as f:
                tj = json.load(f)
            vocab = [p for p, _ in tj["model"]["vocab"]]
            added = {t["id"] for t in tj["added_tokens"] if t["special"]}
            hf = [hf_decode(vocab, added, x, m == "bf") for x in ids[key]]
            compare(f"{m}: fitlm decode == tokenizers' decoders", corpus, [h[0] for h in hf], dec,
                    lambda i: not hf[i][1])
            spm_dec = [sp.decode([t for t in x if t not in added]) for x in ids[key]]
            compare(f"{m}: fitlm decode == sentencepiece decode", corpus, spm_dec, dec,
                    lambda i: spm_dec[i] == hf[i][0] and not hf[i][1], minimum=400)
            if m == "t5":
                cm_t5 = cm

        # transformers.js: its normalizer output (NFKC there) vs tokenizers-style normalization.
        js_same_new = [js_norm_new[i] == hf_normalizer(cm_t5, s) for i, s in enumerate(corpus)]
        compare("t5 tokenizer.json: fitlm == transformers.js", corpus, js_new, ids["t5"],
                lambda i: js_same_new[i])
        js_same_old = [js_norm_old[i] == cm_t5.hf(corpus[i]) for i in range(len(corpus))]
        compare("t5 old layout: fitlm == transformers.js", corpus, js_old, ids["t5_old"],
                lambda i: js_same_old[i])
    finally:
        shutil.rmtree(work)
    if failures:
        print("FAILED:", "; ".join(failures))
        sys.exit(1)
    print("all equal")


if __name__ == "__main__":
    main()
