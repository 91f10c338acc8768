#!/usr/bin/python3
"""Regenerates the SentencePiece Unigram fixtures in tests/text/fixtures/unigram/.

  /usr/bin/python3 tests/text/spm_make_fixture.py

Writes a deterministic multilingual training text (English, Korean, Japanese, Chinese, accented
Latin, fullwidth forms, digits, emoji), trains two models with Debian's spm_train and converts
each to tokenizer.json with spm_to_tokenizer_json.py:

  t5/  spiece.model   unigram, vocab 2500, no byte fallback, with a charsmap of a subset of
                      SentencePiece's nmt_nfkc rules (all one-character rules, the multi-character
                      ones that start below U+1100 or with kana, and the Hangul jamo compositions
                      of U+1100..U+1102: the full table is 240 KB); converted as transformers'
                      T5Converter does (tokenizer.json, newest format)
  bf/  spiece.model   byte_fallback, identity normalization (no charsmap), vocab 2000; converted
                      with byte fallback kept

Needs the Debian packages sentencepiece (spm_train) and nothing else.
"""
import os
import random
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "unigram")

EN = (
    "the of and to in is was for that with as on by at from his her it an were which be this are "
    "have had not but they their one all would there been has when who will more no if out so said "
    "what up its about into than them can only other new some could time these two may then do "
    "first any my now such like our over man me even most made after also did many before must "
    "through back years where much your way well down should because each just those people how "
    "model training tokenizer sentence piece language data learning fine tuning gradient batch "
    "encoder decoder attention translation summary question answer context input target"
).split()
KO = (
    "안녕하세요 만나서 반갑습니다 한국어 토크나이저 테스트 문장입니다 대한민국 서울특별시 강남구 "
    "오늘 날씨가 좋습니다 우리는 학교에 갑니다 인공지능 기계학습 모델 데이터 번역 요약 질문 답변 "
    "사람 시간 생각 나라 세계 경제 정부 회사 문제 사회 문화 역사 과학 기술 음식 사랑 친구 가족"
).split()
JA = (
    "こんにちは 世界 東京 日本 首都 です カタカナ ひらがな 漢字 今日 天気 いい 私 学校 行きます "
    "機械学習 人工知能 翻訳 要約 質問 回答 言語 モデル データ 時間 人 国 会社 問題 社会 文化 歴史"
).split()
ZH = (
    "你好 世界 机器学习 是 人工智能 的 一个 分支 我们 今天 去了 台北 繁體字 简体字 中国 北京 上海 "
    "语言 模型 数据 翻译 摘要 问题 回答 时间 国家 公司 社会 文化 历史 科学 技术"
).split()
ACCENT = (
    "café naïve façade Ærøskøbing Ōsaka résumé coöperate jalapeño São Paulo Zürich Kraków "
    "Tiếng Việt có dấu Ελληνικά Привет мир Straße élève français español"
).split()
FULLWIDTH = "ＡＢＣ ａｂｃ １２３ ｶﾀｶﾅ （括弧） ！？ ＄％ ～".split()
SYMBOLS = ["½", "²", "㎏", "Ⅻ", "ﬁ", "ﬂ", "①", "™", "…", "—", "“quoted”", "‘single’"]
EMOJI = ["😀", "👍", "🎉", "❤️", "🇰🇷", "✨", "🤖", "☕"]


def sentence(rnd):
    lang = rnd.choice(["en", "en", "en", "ko", "ko", "ja", "zh", "mix"])
    if lang == "en":
        words = [rnd.choice(EN) for _ in range(rnd.randint(4, 18))]
        if rnd.random() < 0.3:
            words[0] = words[0].capitalize()
        if rnd.random() < 0.2:
            words.insert(rnd.randrange(len(words)), rnd.choice(ACCENT))
        s = " ".join(words)
    elif lang == "ko":
        s = " ".join(rnd.choice(KO) for _ in range(rnd.randint(3, 10)))
    elif lang == "ja":
        s = "".join(rnd.choice(JA) for _ in range(rnd.randint(3, 10)))
    elif lang == "zh":
        s = "".join(rnd.choice(ZH) for _ in range(rnd.randint(3, 12)))
    else:
        pools = [EN, KO, JA, ZH, ACCENT, FULLWIDTH, SYMBOLS, EMOJI]
        s = " ".join(rnd.choice(rnd.choice(pools)) for _ in range(rnd.randint(3, 12)))
    if rnd.random() < 0.2:
        s += " " + str(rnd.randint(0, 10 ** rnd.randint(1, 7)))
    if rnd.random() < 0.1:
        s += " " + rnd.choice(EMOJI)
    return s + rnd.choice([".", "", "!", "?", "。", "。", "？"])


def charsmap_rules(model):
    """All (key, value) rules of a model's precompiled charsmap (walks the double-array trie)."""
    sys.path.insert(0, HERE)
    from spm_to_tokenizer_json import parse_model
    with open(model, "rb") as f:
        cm = parse_model(f.read())["precompiled_charsmap"]
    n = struct.unpack("<I", cm[:4])[0]
    arr = struct.unpack("<%dI" % (n // 4), cm[4:4 + n])
    norm = cm[4 + n:]
    rules = []

    def walk(pos, key):
        for c in range(1, 256):
            p = pos ^ c
            if p >= len(arr) or arr[p] & ((1 << 31) | 0xFF) != c:
                continue
            unit = arr[p]
            nxt = p ^ ((unit >> 10) << ((unit & (1 << 9)) >> 6))
            if (unit >> 8) & 1:
                v = arr[nxt] & ((1 << 31) - 1)
                rules.append((key + bytes([c]), norm[v:norm.index(b"\0", v)]))
            walk(nxt, key + bytes([c]))

    root = arr[0]
    walk((root >> 10) << ((root & (1 << 9)) >> 6), b"")
    return rules


def keep_rule(key):
    cps = [ord(c) for c in key]
    f = cps[0]
    return (len(cps) == 1 or f < 0x1100 or (0x1100 <= f <= 0x1102 and len(cps) <= 3)
            or 0xFF61 <= f <= 0xFF9F or 0x3040 <= f <= 0x30FF)


def train(text, prefix, vocab, extra):
    subprocess.run(
        ["spm_train", f"--input={text}", f"--model_prefix={prefix}", f"--vocab_size={vocab}",
         "--model_type=unigram", "--character_coverage=0.9995", "--pad_id=0", "--eos_id=1",
         "--unk_id=2", "--bos_id=-1", "--num_threads=1", "--minloglevel=2"] + extra,
        check=True)
    os.remove(prefix + ".vocab")


def main():
    os.makedirs(OUT, exist_ok=True)
    rnd = random.Random(20251117)
    with tempfile.TemporaryDirectory() as tmp:
        text = os.path.join(tmp, "train.txt")
        with open(text, "w", encoding="utf-8") as f:
            for _ in range(30000):
                f.write(sentence(rnd) + "\n")
        # The nmt_nfkc rules, from a throwaway model, cut down to the subset described above.
        train(text, os.path.join(tmp, "full"), 3000, [])
        tsv = os.path.join(tmp, "rules.tsv")
        with open(tsv, "w", encoding="utf-8") as f:
            for k, v in charsmap_rules(os.path.join(tmp, "full.model")):
                k, v = k.decode("utf-8"), v.decode("utf-8")
                if keep_rule(k):
                    hexes = lambda s: " ".join("%X" % ord(c) for c in s)  # noqa: E731
                    f.write(f"{hexes(k)}\t{hexes(v)}\n")
        conv = os.path.join(HERE, "spm_to_tokenizer_json.py")
        for d in ("t5", "bf"):
            os.makedirs(os.path.join(OUT, d), exist_ok=True)
        t5 = os.path.join(OUT, "t5", "spiece")
        train(text, t5, 2500, [f"--normalization_rule_tsv={tsv}"])
        subprocess.run([sys.executable, conv, t5 + ".model",
                        os.path.join(OUT, "t5", "tokenizer.json")], check=True)
        bf = os.path.join(OUT, "bf", "spiece")
        train(text, bf, 2000, ["--byte_fallback=true", "--normalization_rule_name=identity"])
        subprocess.run([sys.executable, conv, bf + ".model",
                        os.path.join(OUT, "bf", "tokenizer.json"), "--handle-byte-fallback",
                        "--extra-ids", "0"], check=True)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
