// The generation options shared by `fitlm generate`, `chat` and `score-generations`
// (src/fitlm/cli/generation_options.h): the same --help lines in the three commands, each with
// its own --max-new-tokens default, and the options reaching the sampler — a seed reproduces a
// sample, and chat's turn t draws with --seed + t, exactly as `generate --chat` with that seed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "fitlm/demo/tiny_model.h"

namespace {

namespace fs = std::filesystem;

// stdout of `fitlm ARGS` (stderr dropped); the command must succeed.
std::string run(const std::string& args) {
  const std::string cmd = std::string(FITLM_BINARY) + " " + args + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while (p && (n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  EXPECT_EQ(p ? pclose(p) : -1, 0) << cmd << "\n" << out;
  return out;
}

std::string sampling_help(const std::string& max_new_tokens) {
  return "  --max-new-tokens INT=" + max_new_tokens +
         std::string(max_new_tokens.size() == 3 ? 4 : 5, ' ') +
         "Tokens to generate at most\n"
         "  --temperature FLOAT=0       0 = greedy\n"
         "  --top-k INT                 Keep the k most likely tokens (0 = off)\n"
         "  --top-p FLOAT               Nucleus sampling mass (1 = off)\n"
         "  --repetition-penalty FLOAT  HF repetition penalty (1 = off)\n"
         "  --stop TEXT ...             Stop when the text contains this string (repeatable)\n"
         "  --seed INT=0                Sampling seed\n";
}

const std::string kSetupHelp =
    "  --model TEXT REQUIRED       Hugging Face model directory\n"
    "  --adapter TEXT ...          PEFT LoRA adapter directory (repeatable; several are summed "
    "unless --ensemble)\n"
    "  --ensemble                  Average the next-token log-probs of the adapters (one decoder "
    "each)\n"
    "  --backend TEXT=cpu          cpu, cuda or cuda:N\n"
    "  --batch-size INT=8          Prompts decoded together\n"
    "  --quantize TEXT:{nf4,fp4}   Keep the base's linear weights 4-bit (nf4 or fp4, blocksize 64, "
    "as bitsandbytes' load_in_4bit), dequantized layer by layer\n"
    "  --no-double-quant           With --quantize: keep one f32 absmax per block instead of "
    "8-bit codes\n";

TEST(GenerationOptions, SameHelpInEveryCommandWithItsOwnDefault) {
  const std::string gen = run("generate --help");
  EXPECT_NE(gen.find(kSetupHelp), std::string::npos) << gen;
  EXPECT_NE(gen.find(sampling_help("128") +
                     "  --json                      One JSON line per prompt {index, prompt, "
                     "text, tokens, finish_reason}\n"),
            std::string::npos)
      << gen;
  const std::string chat = run("chat --help");
  EXPECT_NE(chat.find(kSetupHelp + "  --system TEXT               System message\n" +
                      sampling_help("512")),
            std::string::npos)
      << chat;
  const std::string score = run("score-generations --help");
  EXPECT_NE(score.find(kSetupHelp), std::string::npos) << score;
  EXPECT_NE(score.find(sampling_help("32")), std::string::npos) << score;
}

class GenerationOptionsRun : public ::testing::Test {
 protected:
  void SetUp() override {
    // One directory per test and process: ctest runs these tests in parallel.
    dir_ = fs::temp_directory_path() /
           ("fitlm_generation_options_test_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "_" +
            std::to_string(::getpid()));
    fs::remove_all(dir_);
    fitlm::demo::TinyModelShape shape;
    shape.hidden_size = 32, shape.intermediate_size = 48;
    fitlm::demo::write_tiny_llama(dir_ / "model", shape, 11);
    // A chat template for the byte-level tiny model, so that `chat` and `generate --chat` work.
    const fs::path cfg = dir_ / "model" / "tokenizer_config.json";
    std::ifstream in(cfg);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    in.close();
    const size_t brace = text.rfind('}');
    ASSERT_NE(brace, std::string::npos);
    text.insert(brace,
                ", \"chat_template\": \"{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}"
                "\\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}\"");
    std::ofstream(cfg) << text;
    model_ = (dir_ / "model").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Sampling at temperature 1 unless `args` says otherwise (CLI11 refuses a repeated option).
  std::string generate(const std::string& args, const std::string& sampling = "--temperature 1",
                       const std::string& max_new = "--max-new-tokens 8") {
    return run("generate --model " + model_ + " " + max_new + " " + sampling + " " + args);
  }

  fs::path dir_;
  std::string model_;
};

TEST_F(GenerationOptionsRun, SeedReproducesAndChangesTheSample) {
  const std::string a = generate("--prompt 'Q: 2+2=' --seed 7 --json");
  EXPECT_EQ(a, generate("--prompt 'Q: 2+2=' --seed 7 --json"));
  // A near-uniform tiny model: 8 draws from ~259 tokens do not repeat by chance.
  EXPECT_NE(a, generate("--prompt 'Q: 2+2=' --seed 8 --json"));
  // Greedy ignores the seed.
  EXPECT_EQ(generate("--prompt 'Q: 2+2=' --seed 1 --json", "--temperature 0"),
            generate("--prompt 'Q: 2+2=' --seed 2 --json", "--temperature 0"));
  // --max-new-tokens reaches the generator (an EOS ending the sequence counts as its token).
  const auto one = nlohmann::json::parse(
      generate("--prompt 'Q: 2+2=' --seed 7 --json", "--temperature 1", "--max-new-tokens 1"));
  EXPECT_EQ(one["tokens"].size(), 1u) << one.dump();
}

TEST_F(GenerationOptionsRun, ChatTurnDrawsWithSeedPlusTurn) {
  const fs::path input = dir_ / "stdin.txt";
  std::ofstream(input) << "hello\n/reset\nhello\n";  // turns 0, 1 (/reset), 2
  const std::string chat = run("chat --model " + model_ +
                               " --max-new-tokens 8 --temperature 1 --top-k 50 --top-p 0.95 "
                               "--seed 40 < " +
                               input.string());
  const std::string sampling = "--temperature 1 --top-k 50 --top-p 0.95";
  const std::string turn0 = generate("--chat --prompt hello --seed 40", sampling);
  const std::string turn2 = generate("--chat --prompt hello --seed 42", sampling);
  EXPECT_EQ(chat, turn0 + turn2);
  EXPECT_NE(turn0, turn2);
}

TEST_F(GenerationOptionsRun, ChatTemplateJinjaFileTakesPrecedence) {
  // Newer transformers save the template as chat_template.jinja; when present it wins over
  // tokenizer_config.json's, as in HF. Greedy decoding of a random model depends on the prompt.
  const std::string greedy = "--temperature 0";
  const std::string from_config = generate("--chat --prompt hello", greedy);
  std::ofstream(dir_ / "model" / "chat_template.jinja")
      << "{% for m in messages %}<<{{ m['content'] }}>>{% endfor %}";
  EXPECT_NE(generate("--chat --prompt hello", greedy), from_config);
  std::ofstream(dir_ / "model" / "chat_template.jinja")
      << "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
         "{% if add_generation_prompt %}assistant: {% endif %}";
  EXPECT_EQ(generate("--chat --prompt hello", greedy), from_config);
}

}  // namespace
