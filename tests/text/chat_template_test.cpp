// Unit tests of the chat-template Jinja engine: expressions, filters, whitespace control, loops,
// namespace(), raise_exception and the errors for unsupported constructs. Whole-template parity
// with @huggingface/jinja is in chat_template_parity_test.sh.
#include "fitlm/text/chat_template.h"

#include <gtest/gtest.h>

#include <filesystem>
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

}  // namespace
}  // namespace fitlm
