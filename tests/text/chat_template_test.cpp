// Unit tests of the chat-template Jinja engine: expressions, filters, whitespace control, loops,
// namespace(), raise_exception and the errors for unsupported constructs. Whole-template parity
// with @huggingface/jinja is in chat_template_parity_test.sh.
#include "fitlm/text/chat_template.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "fitlm/core/error.h"
#include "fitlm/text/jinja/evaluator.h"

namespace fitlm {
namespace {

using jinja::Json;

// Renders `src` with the JSON object `vars` as globals.
std::string render(const std::string& src, const Json& vars = Json::object()) {
  std::map<std::string, jinja::Value> globals;
  for (auto it = vars.begin(); it != vars.end(); ++it)
    globals[it.key()] = jinja::Value::of(it.value());
  return jinja::Template(src).render(globals);
}

// The message of the fitlm::Error that rendering throws ("" when none).
std::string render_error(const std::string& src, const Json& vars = Json::object()) {
  try {
    render(src, vars);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput);
    return e.what();
  }
  return "";
}

TEST(ChatTemplateJinja, Literals) {
  EXPECT_EQ(render("{{ 'a' }}{{ \"b\" }}{{ 1 }}{{ 2.5 }}{{ 1.0 }}{{ none }}{{ true }}{{ False }}"),
            "ab12.51.0NoneTrueFalse");
  EXPECT_EQ(render("{{ [1, 'x', none] }}{{ {'k': 'v'} }}"), "[1, 'x', None]{'k': 'v'}");
  EXPECT_EQ(render("{{ 'tab\\there\\n' }}{{ '\\u00e9\\x41' }}{{ 'a' 'b' }}"), "tab\there\néAab");
  EXPECT_EQ(render("{{ 1e-5 }} {{ 1e16 }} {{ 0.1 + 0.2 }}"), "1e-05 1e+16 0.30000000000000004");
}

TEST(ChatTemplateJinja, Arithmetic) {
  EXPECT_EQ(render("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} "
                   "{{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ -3 }}"),
            "7 9 3 -4 1 2 3.5 1024 -3");
  EXPECT_EQ(render("{{ 'a' + 'b' }}{{ 'x' ~ 1 ~ none }}{{ [1] + [2] }}{{ 'ab' * 2 }}"),
            "abx1None[1, 2]abab");
  EXPECT_EQ(render("{{ 'x' ~ undefined_name ~ 'y' }}"), "xy");
  EXPECT_NE(
      render_error("{{ 'a' + 1 }}").find("unsupported operand type(s) for +: 'str' and 'int'"),
      std::string::npos);
}

TEST(ChatTemplateJinja, LogicAndComparisons) {
  EXPECT_EQ(render("{{ 1 < 2 < 3 }}{{ 1 < 3 < 2 }}{{ 'b' > 'a' }}{{ 1 == 1.0 }}{{ 'a' != 'a' }}"),
            "TrueFalseTrueTrueFalse");
  EXPECT_EQ(
      render("{{ 'ell' in 'hello' }}{{ 2 in [1, 2] }}{{ 'k' in {'k': 1} }}{{ 3 not in [3] }}"),
      "TrueTrueTrueFalse");
  EXPECT_EQ(render("{{ not true }}{{ none or 'x' }}{{ 0 and 1 }}{{ '' or [] }}"), "Falsex0[]");
  EXPECT_EQ(render("{{ 'y' if x else 'n' }}{{ 'y' if not x }}|", {{"x", false}}), "ny|");
  EXPECT_EQ(render("{{ not(a.startswith('<') and a.endswith('>')) }}", {{"a", "<b>"}}), "False");
}

TEST(ChatTemplateJinja, SubscriptsSlicesAttributes) {
  const Json vars = {{"m", Json::array({Json{{"role", "user"}, {"content", "hi"}},
                                        Json{{"role", "assistant"}, {"content", "yo"}}})},
                     {"s", "héllo"}};
  EXPECT_EQ(render("{{ m[0].role }} {{ m[-1]['content'] }} {{ m[5] is defined }}", vars),
            "user yo False");
  EXPECT_EQ(render("{% for x in m[::-1] %}{{ x.role }},{% endfor %}{{ m[1:] | length }}", vars),
            "assistant,user,1");
  EXPECT_EQ(render("{{ s[1] }}{{ s[1:3] }}{{ s[::-1] }}{{ s[-2:] }}{{ s | length }}", vars),
            "éélolléhlo5");
  EXPECT_EQ(render("{{ [1,2,3,4,5][1:4:2] }}{{ [1,2,3][5:] }}{{ [1,2,3][-10:1] }}"), "[2, 4][][1]");
  EXPECT_NE(render_error("{{ m[0].nope.deeper }}", vars).find("'nope' is undefined"),
            std::string::npos);
}

TEST(ChatTemplateJinja, StringAndDictMethods) {
  EXPECT_EQ(
      render("[{{ '  a b \\n'.strip() }}][{{ 'xxaxx'.strip('x') }}][{{ '\\n\\na'.lstrip('\\n') }}]"
             "[{{ 'a  '.rstrip() }}]"),
      "[a b][a][a][a]");
  EXPECT_EQ(render("{{ 'a</think>b</think>c'.split('</think>') }}{{ ' a  b '.split() }}"
                   "{{ 'a,b,c'.split(',', 1) }}"),
            "['a', 'b', 'c']['a', 'b']['a', 'b,c']");
  EXPECT_EQ(render("{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}{{ 'aB'.upper() }}"
                   "{{ 'aB'.lower() }}{{ 'a-a'.replace('a', 'b') }}{{ 'hello world'.title() }}"),
            "TrueTrueABabb-bHello World");
  EXPECT_EQ(render("{{ 'ab'.replace('', '-') }}{{ 'a\\u3000b\\u2003c'.split() }}"),
            "-a-b-['a', 'b', 'c']");
  const Json vars = {{"d", Json{{"b", 1}, {"a", Json::array({1, 2})}}}};
  EXPECT_EQ(render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{{ d.get('a') }}"
                   "{{ d.get('z', 'dflt') }}{{ d.get('z') }}",
                   vars),
            "b=1;a=[1, 2];[1, 2]dfltNone");
}

TEST(ChatTemplateJinja, Filters) {
  const Json vars = {
      {"msgs", Json::array({Json{{"role", "user"}, {"n", 1}}, Json{{"role", "assistant"}, {"n", 2}},
                            Json{{"role", "user"}, {"n", 3}}})},
      {"tool",
       Json{{"name", "f"}, {"args", Json{{"b", "é\n"}, {"a", Json::array({1, 2.5, nullptr})}}}}}};
  EXPECT_EQ(
      render("[{{ '  x \\n' | trim }}]{{ [1, 2] | length }}{{ 'ab' | upper }}{{ 'AB' | lower }}"
             "{{ 3 | string }}{{ [1,2] | first }}{{ [1,2] | last }}{{ ['a','b'] | join('-') }}"),
      "[x]2ABab312a-b");
  EXPECT_EQ(render("{{ tool | tojson }}", vars),
            "{\"name\": \"f\", \"args\": {\"b\": \"é\\n\", \"a\": [1, 2.5, null]}}");
  EXPECT_EQ(render("{{ tool.args | tojson(indent=2) }}", vars),
            "{\n  \"b\": \"é\\n\",\n  \"a\": [\n    1,\n    2.5,\n    null\n  ]\n}");
  EXPECT_EQ(render("{{ tool | tojson(sort_keys=true) }}", vars).substr(0, 9), "{\"args\": ");
  EXPECT_EQ(render("{{ x | default('d') }}{{ '' | default('e', true) }}{{ 'v' | default('f') }}"),
            "dev");
  EXPECT_EQ(render("{{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='n') | list }}"
                   "{{ msgs | rejectattr('role', 'equalto', 'user') | list | length }}"
                   "{{ msgs | map(attribute='role') | join(',') }}",
                   vars),
            "[1, 3]1user,assistant,user");
  EXPECT_EQ(render("{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}"),
            "a\n  b\n\n  c|  a\n  b");
  EXPECT_EQ(
      render("{{ 'a-b' | replace('-', '+') }}{{ [3, 1, 3] | unique | list }}{{ [1, 2] | sum }}"),
      "a+b[3, 1]3");
}

TEST(ChatTemplateJinja, Tests) {
  const Json vars = {{"s", "x"}, {"n", nullptr}, {"d", Json::object()}, {"l", Json::array()},
                     {"i", 3},   {"f", 1.5},     {"b", false}};
  EXPECT_EQ(render("{{ s is string }}{{ s is defined }}{{ zz is defined }}{{ zz is undefined }}"
                   "{{ n is none }}{{ n is not none }}{{ d is mapping }}{{ l is iterable }}"
                   "{{ i is number }}{{ i is integer }}{{ f is float }}{{ b is false }}"
                   "{{ b is boolean }}{{ i is odd }}{{ i is divisibleby 3 }}{{ s is equalto 'x' }}",
                   vars),
            "TrueTrueFalseTrueTrueFalseTrueTrueTrueTrueTrueTrueTrueTrueTrueTrue");
}

TEST(ChatTemplateJinja, WhitespaceControl) {
  // trim_blocks drops the newline after a block tag; lstrip_blocks drops indentation before it.
  EXPECT_EQ(render("{% if true %}\n    x\n    {% endif %}\ny"), "    x\ny");
  EXPECT_EQ(render("a  {%- if true -%}  b  {%- endif -%}  c"), "abc");
  EXPECT_EQ(render("a\n  {{- 'b' -}}\n  c"), "abc");
  // `}}` does not trim its newline; a comment does.
  EXPECT_EQ(render("{{ 'a' }}\n{# c #}\nb"), "a\nb");
  // `+` turns lstrip_blocks / trim_blocks off for that tag.
  EXPECT_EQ(render("  {%+ if true +%}\nx{% endif %}"), "  \nx");
  // lstrip_blocks only strips when the tag is alone after the indentation.
  EXPECT_EQ(render("a  {% if true %}b{% endif %}"), "a  b");
  // One trailing newline of the template is dropped (keep_trailing_newline=False); CRLF is \n.
  EXPECT_EQ(render("x\r\ny\n"), "x\ny");
}

TEST(ChatTemplateJinja, ForLoops) {
  const Json vars = {{"xs", Json::array({"a", "b", "c"})}};
  EXPECT_EQ(
      render("{% for x in xs %}{{ loop.index0 }}{{ loop.index }}{{ loop.first }}{{ loop.last }}"
             "{{ loop.length }}{{ loop.revindex }};{% endfor %}",
             vars),
      "01TrueFalse33;12FalseFalse32;23FalseTrue31;");
  EXPECT_EQ(
      render("{% for x in xs if x != 'b' %}{{ x }}{{ loop.index }}{{ loop.length }}{% endfor %}",
             vars),
      "a12c22");
  EXPECT_EQ(render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for x in xs %}{% if x == 'b' %}{% continue %}{% endif %}{% if x == 'c' %}"
                   "{% break %}{% endif %}{{ x }}{% endfor %}",
                   vars),
            "a");
  EXPECT_EQ(
      render("{% for i in range(3) %}{{ i }}{% endfor %}{% for k in {'p': 1, 'q': 2} %}{{ k }}"
             "{% endfor %}"),
      "012pq");
  EXPECT_EQ(render("{% for x in xs %}{{ loop.previtem | default('-') }}{% endfor %}", vars), "-ab");
}

TEST(ChatTemplateJinja, SetScopingAndNamespace) {
  // A set inside a loop does not leak; namespace attributes do.
  EXPECT_EQ(render("{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{% endfor %}{{ x }}"),
            "1");
  EXPECT_EQ(render("{% set ns = namespace(total=0, seen=false) %}{% for i in [1, 2, 3] %}"
                   "{% set ns.total = ns.total + i %}{% endfor %}{{ ns.total }}{{ ns.seen }}"),
            "6False");
  EXPECT_EQ(render("{% set ns = namespace() %}{% set ns.a = 'v' %}{{ ns.a }}"), "v");
  EXPECT_EQ(render("{% set a, b = 1, 2 %}{{ b }}{{ a }}"), "21");
  EXPECT_EQ(render("{% set block %}in {{ 'side' }}{% endset %}[{{ block }}]"), "[in side]");
  EXPECT_NE(render_error("{% set x = 1 %}{% set x.a = 2 %}").find("not a namespace()"),
            std::string::npos);
}

TEST(ChatTemplateJinja, Macros) {
  EXPECT_EQ(render("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
                   "{{ greet('A') }} {{ greet('B', '?') }} {{ greet(name='C', punct='.') }}"),
            "Hi A! Hi B? Hi C.");
}

TEST(ChatTemplate, RaiseExceptionMessage) {
  ChatTemplate t("{{ raise_exception('Conversation roles must alternate') }}", "<s>", "</s>");
  try {
    t.render({{"user", "hi"}}, false);
    FAIL() << "expected an exception";
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "chat_template");
    EXPECT_EQ(std::string(e.what()), "[chat_template] Conversation roles must alternate");
    EXPECT_EQ(e.code(), ExitCode::kBadInput);
  }
}

TEST(ChatTemplate, UnsupportedConstructsAreNamed) {
  const auto message = [](const std::string& src) {
    try {
      ChatTemplate t(src, "", "");
      t.render({}, false);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(message("a\n{% include 'x.jinja' %}"),
            "[chat_template] unsupported Jinja construct 'include' at line 2");
  EXPECT_EQ(message("{% extends 'base' %}"),
            "[chat_template] unsupported Jinja construct 'extends' at line 1");
  EXPECT_EQ(message("\n\n{% raw %}{{ x }}{% endraw %}"),
            "[chat_template] unsupported Jinja construct 'raw' at line 3");
  EXPECT_EQ(message("{{ x | wordwrap }}"),
            "[chat_template] unsupported Jinja construct 'filter wordwrap' at line 1");
  EXPECT_EQ(message("{{ x is escaped }}"),
            "[chat_template] unsupported Jinja construct 'test escaped' at line 1");
  EXPECT_EQ(message("{% for x in y recursive %}{% endfor %}"),
            "[chat_template] unsupported Jinja construct 'for ... recursive' at line 1");
  EXPECT_NE(message("{% if x %}").find("missing '{% endif %}'"), std::string::npos);
  EXPECT_NE(message("{{ x ").find("unterminated '{{' opened at line 1"), std::string::npos);
}

TEST(ChatTemplate, RendersHfVariables) {
  // bos/eos and add_generation_prompt as transformers passes them; tools is defined and None.
  ChatTemplate t(
      "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}{{ eos_token }}"
      "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}{{ tools is none }}"
      "{{ flag | default('') }}",
      "<s>", "</s>");
  EXPECT_EQ(t.render({{"system", " S "}, {"user", "hi\n"}}, true, {{"flag", "!"}}),
            "<s><system>S</s><user>hi</s><assistant>True!");
  EXPECT_EQ(t.render({{"user", "hi"}}, false), "<s><user>hi</s>True");
}

TEST(ChatTemplate, ReadsTokenizerConfigs) {
  const std::filesystem::path dir =
      std::filesystem::path(FITLM_TEST_DATA_DIR) / "text" / "fixtures" / "templates";
  const ChatTemplate qwen = ChatTemplate::from_model_dir(dir / "qwen2.5");
  EXPECT_EQ(qwen.render({{"user", "Hi"}}, true),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(qwen.special_tokens().value("eos_token", ""), "<|im_end|>");
  EXPECT_FALSE(qwen.special_tokens().contains("bos_token"));  // null in the config
  const ChatTemplate llama2 =
      ChatTemplate::from_tokenizer_config(dir / "llama2-chat" / "tokenizer_config.json");
  EXPECT_EQ(llama2.render({{"system", "S"}, {"user", " Q "}, {"assistant", "A"}}, false),
            "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\n Q [/INST] A </s>");
  try {
    ChatTemplate::from_tokenizer_config(dir / "README.md");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("README.md"), std::string::npos);
  }
}

// ---------------------------------------------------------------- untrusted templates
// Templates come inside downloaded model repos: whatever they ask for must end in an input error
// (exit 2) naming what went wrong, never a crash, a trap or an unbounded loop or allocation.

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

// f() run on a thread with a 256 KiB stack; an exception's message stands for its result.
std::string on_small_stack(const std::function<std::string()>& f) {
  struct Job {
    const std::function<std::string()>* f;
    std::string out;
  } job{&f, {}};
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, size_t{256} << 10);
  pthread_t thread;
  const auto run = [](void* p) -> void* {
    Job& j = *static_cast<Job*>(p);
    try {
      j.out = (*j.f)();
    } catch (const std::exception& e) {
      j.out = e.what();
    }
    return nullptr;
  };
  EXPECT_EQ(pthread_create(&thread, &attr, run, &job), 0);
  pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
  return job.out;
}

// Input errors from the constructor (parse) or render.
std::string template_error(const std::string& src, const Json& vars = Json::object()) {
  try {
    std::map<std::string, jinja::Value> globals;
    for (auto it = vars.begin(); it != vars.end(); ++it)
      globals[it.key()] = jinja::Value::of(it.value());
    jinja::Template(src).render(globals);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput) << e.what();
    EXPECT_EQ(e.component(), "chat_template");
    return e.what();
  }
  return "";
}

#define EXPECT_ERROR_HAS(src, text)                                               \
  do {                                                                            \
    const std::string message_ = template_error(src);                             \
    EXPECT_NE(message_.find(text), std::string::npos) << "message: " << message_; \
  } while (0)

TEST(ChatTemplateJinja, DeepExpressionNestingIsAnError) {
  const int n = 100000;  // far past the limit: parsing stops at level 257
  const std::string deep = "nested deeper than 256 levels at line 1";
  EXPECT_ERROR_HAS("{{ " + repeat("(", n) + "1" + repeat(")", n) + " }}", deep);
  EXPECT_ERROR_HAS("{{ " + repeat("[", n) + repeat("]", n) + " }}", deep);
  EXPECT_ERROR_HAS("{{ " + repeat("{'a': ", n) + "1" + repeat("}", n) + " }}", deep);
  EXPECT_ERROR_HAS("{{ " + repeat("f(", n) + repeat(")", n) + " }}", deep);
  EXPECT_ERROR_HAS("{{ " + repeat("x[", n) + "0" + repeat("]", n) + " }}", deep);
  EXPECT_ERROR_HAS("{{ " + repeat("-", n) + "1 }}", deep);
  EXPECT_ERROR_HAS("{{ " + repeat("not ", n) + "x }}", deep);
  EXPECT_ERROR_HAS("{{ " + repeat("x if y else ", n) + "x }}", deep);
  EXPECT_ERROR_HAS("{{ x" + repeat(" if y", n) + " }}", deep);
  // Flat chains are built by loops, not recursion, but their trees are as deep.
  EXPECT_ERROR_HAS("{{ " + repeat("1+", n) + "1 }}", deep);
  EXPECT_ERROR_HAS("{{ " + repeat("1 ~ ", n) + "1 }}", deep);
  EXPECT_ERROR_HAS("{{ " + repeat("2 ** ", n) + "1 }}", deep);
  EXPECT_ERROR_HAS("{{ " + repeat("x and ", n) + "x }}", deep);
  EXPECT_ERROR_HAS("{{ x" + repeat("|e", n) + " }}", deep);
  EXPECT_ERROR_HAS("{{ x" + repeat(".a", n) + " }}", deep);
  EXPECT_ERROR_HAS("{{ x" + repeat("()", n) + " }}", deep);
  EXPECT_ERROR_HAS("{{ x" + repeat(" is defined()", n) + " }}", deep);
  EXPECT_ERROR_HAS("{{ f(a=" + repeat("f(a=", n) + "1" + repeat(")", n + 1) + " }}", deep);
  // Just under the limit is fine.
  EXPECT_EQ(render("{{ " + repeat("(", 200) + "1" + repeat(")", 200) + " }}"), "1");
  EXPECT_EQ(render("{{ " + repeat("1+", 200) + "1 }}"), "201");
  EXPECT_EQ(render("{{ " + repeat("-", 200) + "1 }}"), "1");
  EXPECT_EQ(render("{{ 'a'" + repeat("|e", 200) + " }}"), "a");
}

TEST(ChatTemplateJinja, DeepBlockNestingIsAnError) {
  const int n = 100000;
  const std::string deep = "blocks nested deeper than 256 levels at line 1";
  EXPECT_ERROR_HAS(repeat("{% if x %}", n) + repeat("{% endif %}", n), deep);
  EXPECT_ERROR_HAS(repeat("{% for x in y %}", n) + repeat("{% endfor %}", n), deep);
  EXPECT_ERROR_HAS(repeat("{% macro m() %}", n) + repeat("{% endmacro %}", n), deep);
  EXPECT_ERROR_HAS(repeat("{% set x %}", n) + repeat("{% endset %}", n), deep);
  EXPECT_ERROR_HAS(repeat("{% generation %}", n) + repeat("{% endgeneration %}", n), deep);
  EXPECT_ERROR_HAS(repeat("{% if x %}{% else %}", n) + repeat("{% endif %}", n), deep);
  EXPECT_EQ(render(repeat("{% if true %}", 200) + "x" + repeat("{% endif %}", 200)), "x");
}

TEST(ChatTemplateJinja, DeepRenderingIsAnError) {
  // One body nests at most 256 blocks and 256 expression levels; recursive macros stack bodies.
  EXPECT_ERROR_HAS("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
                   "macro 'f': calls nested deeper than 100 levels at line 1");
  // Each call nests 250 blocks and a 200-deep left spine with the call at its bottom.
  const std::string body = repeat("{% if true %}", 250) + "{{ f()" + repeat(" ~ ''", 200) + " }}" +
                           repeat("{% endif %}", 250);
  EXPECT_ERROR_HAS("{% macro f() %}" + body + "{% endmacro %}{{ f() }}",
                   "rendering nested deeper than 1024 levels");
  EXPECT_ERROR_HAS("{% macro f() %}{{ f()" + repeat(" ~ ''", 250) + " }}{% endmacro %}{{ f() }}",
                   "rendering nested deeper than 1024 levels");
  EXPECT_EQ(render("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ n }}{% endif %}{% endmacro %}"
                   "{{ f(5) }}"),
            "12345");
}

TEST(ChatTemplateJinja, IntegerOverflowIsAnError) {
  const std::string overflow = "integer overflow at line 1";
  EXPECT_ERROR_HAS("{{ (-9223372036854775807 - 1) // -1 }}", overflow);
  EXPECT_ERROR_HAS("{{ 9223372036854775807 + 1 }}", overflow);
  EXPECT_ERROR_HAS("{{ -9223372036854775807 - 2 }}", overflow);
  EXPECT_ERROR_HAS("{{ 4611686018427387904 * 2 }}", overflow);
  EXPECT_ERROR_HAS("{{ 2 ** 64 }}", overflow);
  EXPECT_ERROR_HAS("{{ 2 ** 63 }}", overflow);
  EXPECT_ERROR_HAS("{{ 3 ** 1000000000000000000 }}", overflow);
  EXPECT_ERROR_HAS("{{ -(-9223372036854775807 - 1) }}", overflow);
  EXPECT_ERROR_HAS("{{ (-9223372036854775807 - 1) | abs }}", overflow);
  EXPECT_ERROR_HAS("{{ 1e300 | int }}", overflow);
  EXPECT_ERROR_HAS("{{ [9223372036854775807, 1] | sum }}", overflow);
  // Python's results where int64 holds them.
  EXPECT_EQ(render("{{ (-9223372036854775807 - 1) % -1 }} {{ 7 % -1 }} {{ 7 // -1 }}"), "0 0 -7");
  EXPECT_EQ(render("{{ -7 // 2 }} {{ 7 // -2 }} {{ -7 // -2 }} {{ -7 % 2 }} {{ 7 % -2 }} "
                   "{{ -7 % -2 }}"),
            "-4 -4 3 1 -1 -1");
  EXPECT_EQ(render("{{ (-2) ** 63 }} {{ 2 ** 62 }} {{ 1 ** 1000000000000000000 }} "
                   "{{ (-1) ** 1000000000000000001 }} {{ 0 ** 0 }} {{ 2 ** -1 }}"),
            "-9223372036854775808 4611686018427387904 1 -1 1 0.5");
  EXPECT_EQ(render("{{ 9223372036854775806 + 1 }} {{ -9223372036854775807 - 1 }} "
                   "{{ (-9223372036854775807 - 1) is divisibleby(-1) }} {{ [9007199254740992, 1] "
                   "| sum }} {{ 9007199254740993 | int }}"),
            "9223372036854775807 -9223372036854775808 True 9007199254740993 9007199254740993");
  EXPECT_EQ(render("{{ range(9223372036854775806, 9223372036854775807, 5) | list }}"
                   "{{ [1, 2, 3][1::9223372036854775807] }}"),
            "[9223372036854775806][2]");
}

TEST(ChatTemplateJinja, OutputAndValueSizesAreBounded) {
  const std::string limit = "16 MiB limit";
  EXPECT_ERROR_HAS("{{ 'a' * 9223372036854775807 }}", limit);
  EXPECT_ERROR_HAS("{{ 9223372036854775807 * 'a' }}", limit);
  EXPECT_ERROR_HAS("{{ [1] * 9223372036854775807 }}", "list repetition");
  EXPECT_ERROR_HAS("{% for i in range(1000000) %}{{ 'x' * 100 }}{% endfor %}",
                   "rendered text exceeds the 16 MiB limit");
  EXPECT_ERROR_HAS("{% set s = 'x' * 1000000 %}{{ ([s] * 16) | join(s) }}", limit);
  EXPECT_ERROR_HAS("{{ ('x\\n' * 1000000) | indent(100) }}", limit);
  EXPECT_ERROR_HAS("{{ 'a\\nb' | indent(9223372036854775807) }}", limit);
  EXPECT_ERROR_HAS("{{ ('x' * 10000000).replace('x', 'yy') }}", limit);
  EXPECT_ERROR_HAS("{{ [[[1]]] | tojson(indent=10000000) }}", limit);
  EXPECT_ERROR_HAS("{% macro m() %}{{ 'x' * 10000000 }}{% endmacro %}{{ 'y' * 10000000 }}{{ m() }}",
                   "rendered text exceeds the 16 MiB limit");
  // Doubling in a loop: strings, lists, nested lists.
  EXPECT_ERROR_HAS(
      "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
      "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
      limit);
  EXPECT_ERROR_HAS(
      "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
      "{% set ns.s = ns.s + ns.s %}{% endfor %}",
      limit);
  EXPECT_ERROR_HAS(
      "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}"
      "{% set ns.l = ns.l + ns.l %}{% endfor %}",
      limit);
  EXPECT_ERROR_HAS(
      "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}"
      "{% set ns.l = [ns.l, ns.l] %}{% endfor %}",
      limit);
  EXPECT_ERROR_HAS(
      "{% set ns = namespace(d={}) %}{% for i in range(64) %}"
      "{% set ns.d = dict(a=ns.d, b=ns.d) %}{% endfor %}",
      limit);
  EXPECT_ERROR_HAS("{{ range(10 ** 18) | length }}", "range() of more than 1000000 items");
  EXPECT_EQ(render("{{ range(1000000) | unique | list | length }}"), "1000000");  // not O(n^2)
  EXPECT_EQ(render("{{ 'ab' * 3 }}{{ [1, 2] * 2 }}{{ 2 * [0] }}[{{ 'x' * -1 }}]{{ [1] * 0 }}"),
            "ababab[1, 2, 1, 2][0, 0][][]");
}

TEST(ChatTemplateJinja, DeepValuesAreBounded) {
  // Each iteration wraps the last value: copying or printing it recurses once per level.
  EXPECT_ERROR_HAS(
      "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"
      "{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}",
      "value nested deeper than 512 levels");
  // A namespace that holds itself.
  EXPECT_ERROR_HAS("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns | tojson }}",
                   "value nested deeper than 512 levels");
  // A chain of 100k namespaces renders, and is destroyed without recursing once per link: on a
  // 256 KiB stack, which holds under 3 bytes per link.
  const std::string chain =
      "{% set ns = namespace(cur=none) %}{% for i in range(100000) %}"
      "{% set ns.cur = namespace(next=ns.cur, other=ns.cur) %}{% endfor %}";
  EXPECT_EQ(on_small_stack([&] { return render(chain + "done"); }), "done");
  EXPECT_ERROR_HAS(chain + "{{ ns | tojson }}", "value nested deeper than 512 levels");
  // The same chain linked from its head: freeing the head frees the whole chain.
  EXPECT_EQ(on_small_stack([] {
              return render(
                  "{% set head = namespace(next=none) %}{% set ns = namespace(cur=head) %}"
                  "{% for i in range(100000) %}{% set c = ns.cur %}"
                  "{% set n = namespace(next=none) %}{% set c.next = n %}{% set ns.cur = n %}"
                  "{% endfor %}done");
            }),
            "done");
  EXPECT_EQ(render("{{ " + repeat("[", 200) + repeat("]", 200) + " | tojson | length }}"), "400");
}

TEST(ChatTemplateJinja, LoopIterationsAreBounded) {
  // Filtered-out items count too (and keep the test fast: no loop variables are made for them).
  EXPECT_ERROR_HAS(
      "{% for i in range(2) %}{% for j in range(1000000) if false %}{% endfor %}"
      "{% endfor %}",
      "more than 1000000 loop iterations at line 1");
  EXPECT_ERROR_HAS("{% for c in 'x' * 2000000 %}{% endfor %}",
                   "cannot iterate over a string of more than 1000000 characters at line 1");
}

TEST(ChatTemplateJinja, WrongArgumentTypesAreInputErrors) {
  // These reached nlohmann's type_error (an internal error, exit 1).
  EXPECT_ERROR_HAS("{{ [1] | tojson(separators=[1, 2]) }}",
                   "tojson separators must be two strings, found list at line 1");
  EXPECT_ERROR_HAS("{{ [1] | tojson(separators={'a': 1, 'b': 2}) }}",
                   "tojson separators must be two strings, found dict at line 1");
  EXPECT_EQ(render("{{ [1, 2] | tojson(separators=[',', ':']) }}"), "[1,2]");
}

TEST(ChatTemplate, ListTemplateEntriesMustBeStrings) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("fitlm_chat_template_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const auto error_for = [&](const std::string& config) {
    const auto path = dir / "tokenizer_config.json";
    std::ofstream(path) << config;
    try {
      ChatTemplate::from_model_dir(dir);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ExitCode::kBadInput) << e.what();
      return std::string(e.what());
    }
    return std::string();
  };
  const std::string file = (dir / "tokenizer_config.json").string();
  EXPECT_EQ(error_for(R"({"chat_template": [{"name": 5, "template": "x"}]})"),
            "[chat_template] " + file + ": chat_template[0].name: expected a string, found number");
  EXPECT_EQ(
      error_for(R"({"chat_template": [{"name": "a", "template": "x"},
                                             {"name": "default", "template": ["x"]}]})"),
      "[chat_template] " + file + ": chat_template[1].template: expected a string, found array");
  EXPECT_EQ(error_for(R"({"chat_template": [{"template": "x"}]})"),
            "[chat_template] " + file + ": chat_template[0].name: missing");
  EXPECT_EQ(error_for(R"({"chat_template": ["x"]})"),
            "[chat_template] " + file +
                ": chat_template[0]: expected an object with 'name' and 'template', found string");
  EXPECT_EQ(error_for(R"({"chat_template": [{"name": "tool_use", "template": "t"},
                                             {"name": "default", "template": "d"}]})"),
            "");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace fitlm
