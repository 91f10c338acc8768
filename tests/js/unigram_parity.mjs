// transformers.js side of fitlm's Unigram tokenizer parity test (tests/text/unigram_parity_test.sh).
//
//   node unigram_parity.mjs corpus DIR [COUNT]   writes DIR/corpus.jsonl (deterministic; the same
//                                                corpus tests/text/fixtures/unigram/hf_reference
//                                                was made from)
//   node unigram_parity.mjs js DIR FIXTURES      transformers.js on the t5 fixture, as
//                                                DIR/js.{new,old}.ids.jsonl and
//                                                DIR/js.{new,old}.normalized.jsonl (normalizer
//                                                output of each line)
//
// transformers.js reads the newest Metaspace format ({"prepend_scheme": "always"}, no
// add_prefix_space) as "never prepend": tokenizers takes it as always, so the new-format file
// is given to transformers.js with add_prefix_space: true added (what the scheme means).
import fs from "node:fs";
import path from "node:path";

function mulberry32(seed) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const EN = ("the of and to in is was for that with as on by at from his her it an were which be " +
  "this are have had not but they model training tokenizer sentence piece language data learning " +
  "fine tuning gradient batch encoder decoder attention translation summary question answer " +
  "Hello World HELLO don't can't I'm quixotic zephyr xylophone").split(" ");
const KO = ("안녕하세요 만나서 반갑습니다 한국어 토크나이저 테스트 문장입니다 대한민국 서울특별시 강남구 " +
  "오늘 날씨가 좋습니다 인공지능 기계학습 모델 데이터 번역 요약 질문 답변 뷁 똠방각하 햏").split(" ");
const JA = ("こんにちは 世界 東京 日本 首都 です カタカナ ひらがな 漢字 今日 天気 機械学習 人工知能 翻訳 " +
  "ｶﾞｷﾞ ﾊﾟﾋﾟ ｱｲｳ ｶﾀｶﾅ半角 がぎぐ ガギグ").split(" ");
const ZH = "你好 世界 机器学习 是 人工智能 的 一个 分支 我们 今天 去了 台北 繁體字 简体字 龘 齉 爨".split(" ");
const ACCENT = ("café naïve façade Ærøskøbing Ōsaka résumé jalapeño São Zürich Kraków Tiếng Việt " +
  "Ελληνικά Привет Straße élève").split(" ");
const FULLWIDTH = "ＡＢＣ ａｂｃ １２３ （括弧） ！？ ＄％ ～ ｟ ￥ ＠".split(" ");
const SYMBOLS = ["½", "²", "㎏", "Ⅻ", "ﬁ", "ﬂ", "①", "™", "…", "—", "“q”", "‘s’", "℃", "№", "㍿", "ǅ", "ſ", "K"];
const EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇰🇷", "❤️", "1️⃣", "©️", "🧑🏿‍💻", "✨", "🤖", "🫠", "☕"];
const SPECIAL = ["</s>", "<pad>", "<unk>", "<extra_id_0>", "<extra_id_99>", "<extra_id_7>", "<s>",
  "<0x41>", "</s", "<extra_id_100>"];
const SPACES = [" ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", " \n ", "\u00a0", "\u3000", "\u2028",
  "\u0085", "\ufeff", "\u200b", "\u2009", "\u000b", "\u000c", "\u2581", "\u2581\u2581", "\r"];
const EDGES = ["\u0301", "e\u0301", "e\u0301\u0301", "\u0301abc", "a\u0308\u0301", "A\u030a",
  "\u212b", "ﬁ\u0301", "ſ\u0301", "\u1100\u1161\u11a8", "\u1100\u1161", "\u1102\u1165", "\u11a8",
  "\u3131\u314f", "\ufffd", "\ue000", "\u0000", "\u0007", "\u001b[31m", "\u{10ffff}",
  "\u{1d400}\u{1d401}", "\u{20000}\u{2a6d6}", "\u200d", "\ufe0f", "a\u200d", "K\u0323\u0307",
  "\u0915\u093c", "\u0915\u094d\u0937", "ß", "İ", "\u00ad", "\u2024\u2024", "\u0f73"];
const RANGES = [[0x20, 0x7e], [0xa0, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff], [0x1100, 0x11ff],
  [0x3040, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3], [0x2000, 0x206f], [0x2460, 0x24ff],
  [0x3200, 0x33ff], [0xff00, 0xffef], [0x1f300, 0x1f64f], [0x300, 0x36f], [0xfb00, 0xfb4f]];

export function makeCorpus(count) {
  const rnd = mulberry32(20251117);
  const int = (n) => Math.floor(rnd() * n);
  const pick = (a) => a[int(a.length)];
  const randChar = () => {
    const [lo, hi] = pick(RANGES);
    return String.fromCodePoint(lo + int(hi - lo + 1));
  };
  const words = (pool, joiner) => {
    const n = 1 + int(10);
    let s = "";
    for (let i = 0; i < n; ++i) s += (i ? joiner() : "") + pick(pool);
    return s;
  };
  const gens = [
    [() => words(EN, () => pick([" ", " ", " ", ", ", "  "])), 20],
    [() => words(KO, () => pick([" ", " ", ""])), 12],
    [() => words(JA, () => pick(["", "", "、"])), 8],
    [() => words(ZH, () => pick(["", "", "，"])), 8],
    [() => words([...ACCENT, ...FULLWIDTH, ...SYMBOLS], () => pick([" ", ""])), 8],
    [() => pick(EMOJI).repeat(1 + int(3)), 5],
    [() => String(int(10 ** (1 + int(9)))) + pick(["", ".5", "%", "원", "円"]), 6],
    [() => pick(SPACES).repeat(1 + int(rnd() < 0.2 ? 20 : 3)), 8],
    [() => pick(SPECIAL), 4],
    [() => pick(EDGES), 6],
    [() => { let s = ""; for (let n = 1 + int(20); n > 0; --n) s += randChar(); return s; }, 8],
  ];
  const total = gens.reduce((a, g) => a + g[1], 0);
  const fragment = () => {
    let r = int(total);
    for (const [g, w] of gens) if ((r -= w) < 0) return g();
    return "";
  };
  const corpus = ["", " ", "a", "Hello world", "  leading and trailing  ", "\n", "</s></s>",
    "▁", "▁▁x", "x▁", "😀 🫠", "ｶﾞ", "\u1100\u1161\u11a8", "e\u0301", "ﬁ\u0301"];
  while (corpus.length < count) {
    const k = rnd() < 0.3 ? 1 : 1 + int(6);
    let s = "";
    for (let i = 0; i < k; ++i) s += (i && rnd() < 0.6 ? pick([" ", "", "\n", "  "]) : "") + fragment();
    corpus.push(s);
  }
  for (let i = 0; i < 10; ++i) { // a few long documents
    let s = "";
    while (s.length < 2000 + int(4000)) s += fragment() + pick([" ", "\n", "", "\n\n"]);
    corpus.push(s);
  }
  return corpus;
}

const readJson = (f) => JSON.parse(fs.readFileSync(f, "utf8"));
const writeJsonl = (f, rows) => fs.writeFileSync(f, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");

async function js(dir, fixtures) {
  const lib = await import("@lenml/tokenizers");
  const corpus = fs.readFileSync(path.join(dir, "corpus.jsonl"), "utf8").split("\n").filter((l) => l).map((l) => JSON.parse(l));
  const t5 = path.join(fixtures, "t5");
  const config = readJson(path.join(t5, "tokenizer_config.json"));
  const newJson = readJson(path.join(t5, "tokenizer.json"));
  newJson.pre_tokenizer.add_prefix_space = true;
  newJson.decoder.add_prefix_space = true;
  const variants = { new: newJson, old: readJson(path.join(dir, "tokenizer_old.json")) };
  for (const [name, tokenizerJSON] of Object.entries(variants)) {
    const tok = lib.TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig: config });
    writeJsonl(path.join(dir, `js.${name}.ids.jsonl`), corpus.map((s) => tok.encode(s)));
    writeJsonl(path.join(dir, `js.${name}.normalized.jsonl`), corpus.map((s) => tok.normalizer(s)));
  }
}

const [cmd, dir, arg] = process.argv.slice(2);
if (cmd === "corpus") {
  fs.mkdirSync(dir, { recursive: true });
  const corpus = makeCorpus(Number(arg ?? 2500));
  writeJsonl(path.join(dir, "corpus.jsonl"), corpus);
} else if (cmd === "js") {
  await js(dir, arg);
} else {
  console.error("usage: node unigram_parity.mjs corpus|js DIR [COUNT|FIXTURES]");
  process.exit(2);
}
