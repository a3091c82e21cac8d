// tests/test_compare.cpp — `tinyadapt compare` beyond the table
// (tools/cmd_compare.cpp, tools/compare_report.h, tools/jobs.h): the learning
// curve over --train-sizes with the bag of words trained on the same samples,
// --jobs, the DAPT rows, --method-args, and bad options. The table and LP-FT
// rows are tests/test_lpft.cpp's. A tiny base on the keyword fixture task.
#include <doctest/doctest.h>

#include <map>
#include <sstream>

#include "data/bow.h"
#include "data/json.h"
#include "tests/helpers.h"

using ta::testing::ScratchDir;

namespace {

const std::string kKeyword = "tests/fixtures/adapt/keyword/train.tsv";

int run(const std::string& arguments, std::string& output, const ScratchDir& dir) {
  const std::string log = dir.file("output.txt");
  const int status = std::system((ta::testing::tinyadapt_binary() + " " + arguments + " >" + log + " 2>&1").c_str());
  output = ta::read_file(log);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// curve.tsv as series -> train_size -> its columns.
std::map<std::string, std::map<long long, std::vector<std::string>>> read_curve(const std::string& path) {
  std::map<std::string, std::map<long long, std::vector<std::string>>> curve;
  std::stringstream lines(ta::read_file(path));
  std::string line;
  std::getline(lines, line);
  CHECK(line == "series\ttrain_size\tid_mean\tid_sd\tood_mean\tood_sd\tseeds");
  while (std::getline(lines, line)) {
    std::vector<std::string> cells;
    std::stringstream fields(line);
    for (std::string cell; std::getline(fields, cell, '\t');) cells.push_back(cell);
    REQUIRE(cells.size() == 7);
    curve[cells[0]][std::stoll(cells[1])] = cells;
  }
  return curve;
}

}  // namespace

TEST_CASE("compare: --train-sizes gives a learning curve with the bag of words on the same samples; --jobs 2; DAPT rows") {
  if (!ta::file_exists(ta::testing::tinyadapt_binary())) {
    MESSAGE("skipped: no " << ta::testing::tinyadapt_binary() << " (make builds it; TINYADAPT_BIN names another)");
    return;
  }
  ScratchDir dir("compare");
  const ta::data::Task task = ta::data::load_task(kKeyword);
  ta::testing::save_keyword_base(task, dir.file("base"), 32);
  ta::testing::save_keyword_base(task, dir.file("dapt"), 32, 0.05f);  // stands in for a continued base
  const std::string out = dir.file("runs/keyword");
  std::string output;
  REQUIRE(run("compare --model " + dir.file("base") + " --task " + kKeyword + " --methods probe,lora --train-sizes 8,32,all "
              "--curve-methods probe,finetune --dapt " + dir.file("dapt") + " --steps 4 --curve-steps 3 --seeds 2 --jobs 2 "
              "--method-args 'lora: --lora-rank 2; finetune: --steps 5' --out " + out, output, dir) == 0);

  // Runs: the table's probe and lora, lora on the DAPT base, the curve's 2 methods x 2 sizes
  // (its `all` point of probe is the table's run; finetune's all point runs once): 2 seeds each.
  const std::string tsv = ta::read_file(out + "/runs.tsv");
  CHECK(std::count(tsv.begin(), tsv.end(), '\n') == 1 + 2 * (3 + 4 + 1));
  CHECK(tsv.find("lora (DAPT base)\t1337\tlora\t96\t") != std::string::npos);
  CHECK(tsv.find("finetune\t1338\tfinetune\t8\t") != std::string::npos);
  const ta::json::Value lora = ta::json::parse_file(out + "/run1-lora-s1337/metrics.json");
  CHECK(lora.at("trainable_params").as_int() < ta::json::parse_file(out + "/run1-lora-s1337/metrics.json").at("all_params").as_int());
  CHECK(ta::read_file(out + "/run1-lora-s1337/adapter_config.json").find("\"r\": 2") != std::string::npos);  // --method-args
  const ta::json::Value small = ta::json::parse_file(out + "/run3-probe-n8-s1338/metrics.json");
  CHECK(small.at("train_size").as_int() == 8);
  CHECK(small.at("data_seed").as_int() == 1338);
  CHECK(small.at("steps").as_int() == 3);  // --curve-steps
  CHECK(ta::json::parse_file(out + "/run0-probe-s1337/metrics.json").at("steps").as_int() == 4);
  // A --steps in --method-args: finetune's table row takes it, its curve points keep --curve-steps.
  CHECK(ta::json::parse_file(out + "/run7-finetune-s1337/metrics.json").at("steps").as_int() == 5);
  CHECK(ta::json::parse_file(out + "/run4-finetune-n8-s1337/metrics.json").at("steps").as_int() == 3);

  // The curve's references: the bag of words trained on each seed's stratified sample.
  const auto curve = read_curve(out + "/curve.tsv");
  for (long long n : {8, 32}) {
    CAPTURE(n);
    double sum = 0;
    for (uint64_t seed : {1337u, 1338u}) {
      ta::data::Task sample = task;
      sample.train = ta::data::stratified_sample(task.train, static_cast<size_t>(n), 2, seed);
      sum += ta::data::BowClassifier(sample).accuracy(task.test);
    }
    CHECK(std::stod(curve.at("bag-of-words").at(n)[2]) == doctest::Approx(sum / 2).epsilon(1e-3));
    CHECK(curve.at("bag-of-words").at(n)[6] == "2");
    CHECK(curve.at("probe").at(n)[6] == "2");
  }
  CHECK(curve.at("bag-of-words").at(96)[6] == "1");  // all: one split, one value
  CHECK(curve.at("finetune").count(96) == 1);
  // The majority class answers the train split's commonest label: its share of the test split.
  const std::vector<size_t> counts = ta::data::label_counts(task.train, 2);
  const int commonest = counts[1] > counts[0] ? 1 : 0;
  const double share = static_cast<double>(std::count_if(task.test.begin(), task.test.end(),
                                                         [&](const ta::data::Example& e) { return e.label == commonest; })) /
                       static_cast<double>(task.test.size());
  CHECK(std::stod(curve.at("majority class").at(96)[2]) == doctest::Approx(share).epsilon(1e-3));

  const std::string summary = ta::read_file(out + "/summary.md");
  CHECK(summary.find("| majority class |") != std::string::npos);
  CHECK(summary.find("learning curve, ID accuracy") != std::string::npos);
  CHECK(summary.find("| method | 8 | 32 | all (96) |") != std::string::npos);
  CHECK(summary.find("| lora (DAPT base) |") != std::string::npos);
  CHECK(summary.find("Runs went 2 at a time") != std::string::npos);

  if (std::system("command -v gnuplot >/dev/null 2>&1") == 0) {
    CHECK(std::system(("tools/plots.sh " + dir.file("runs") + " keyword >/dev/null 2>&1").c_str()) == 0);
    for (const char* png : {"accuracy_vs_trainable.png", "id_vs_ood.png", "loss_curves.png", "learning_curve.png"}) {
      CAPTURE(png);
      CHECK(ta::file_exists(out + "/" + png));
    }
  }
}

TEST_CASE("compare --bf16: every run but full fine-tuning stores the frozen base in bfloat16") {
  if (!ta::file_exists(ta::testing::tinyadapt_binary())) return;
  ScratchDir dir("compare");
  ta::testing::save_keyword_base(ta::data::load_task(kKeyword), dir.file("base"), 32);
  const std::string out = dir.file("runs");
  std::string output;
  REQUIRE(run("compare --model " + dir.file("base") + " --task " + kKeyword + " --methods lora,finetune --steps 3 --bf16 --out " + out,
              output, dir) == 0);
  CHECK(ta::json::parse_file(out + "/run0-lora-s1337/metrics.json").at("base_precision").as_string() == "bfloat16");
  CHECK(ta::json::parse_file(out + "/run1-finetune-s1337/metrics.json").at("base_precision").as_string() == "float32");
}

TEST_CASE("compare: bad options are one line and status 2") {
  if (!ta::file_exists(ta::testing::tinyadapt_binary())) {
    MESSAGE("skipped: no " << ta::testing::tinyadapt_binary() << " (make builds it; TINYADAPT_BIN names another)");
    return;
  }
  ScratchDir dir("compare_bad");
  const std::string base = "compare --model " + dir.file("base") + " --task " + kKeyword + " --out " + dir.file("out") + " ";
  const std::pair<std::string, std::string> cases[] = {
      {"--train-sizes 8,x", "--train-sizes: 'x' is not a number of examples or 'all'"},
      {"--train-sizes 0", "--train-sizes: '0' is not a number"},
      {"--curve-methods lp-ft --train-sizes 8", "--curve-methods: 'lp-ft' is not a method"},
      {"--methods probe,nosuch", "compare: unknown method 'nosuch'"},
      {"--jobs 0", "--seeds and --jobs must be at least 1"},
      {"--method-args 'prefix --lr 1'", "--method-args: expected 'METHOD: OPTIONS; ...'"},
      {"--method-args 'nosuch: --lr 1'", "--method-args: expected"},
      {"--pooling max", "--pooling must be last, first or mean, got 'max'"},
      {"--eval-limit -1", "--eval-limit must be a number of examples"},
      {"--methods probe", dir.file("base") + ": not a model directory"},
  };
  for (const auto& [arguments, message] : cases) {
    CAPTURE(arguments);
    std::string output;
    CHECK(run(base + arguments, output, dir) == 2);
    CHECK(output.find(message) != std::string::npos);
    CHECK(std::count(output.begin(), output.end(), '\n') == 1);
  }
  // A --train-size larger than the split fails in the run, and compare says which.
  ta::testing::save_keyword_base(ta::data::load_task(kKeyword), dir.file("base"), 32);
  std::string output;
  CHECK(run(base + "--methods probe --train-sizes 500 --curve-methods probe --steps 2", output, dir) == 2);
  CHECK(output.find("--train-size 500") != std::string::npos);
}
