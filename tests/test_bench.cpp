// tests/test_bench.cpp — `tinyadapt bench`'s command line, through the binary.
// What it measures is time, which tests never check; these check that each
// mode runs the setups it names and reports them, and that bad lists fail.
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>
#include <utility>

#include "data/io.h"
#include "data/json.h"
#include "tests/helpers.h"

using namespace ta;
using ta::testing::run_cli;
using ta::testing::ScratchDir;

namespace {
const std::string kShape = "bench --vocab 64 --d 16 --layers 1 --heads 2 --batch 2 --steps 2 --warmup 1 --threads 1";
const std::string kTiny = kShape + " --ctx 24";
}

TEST_CASE("bench --methods: every named setup takes its steps in turn and is reported") {
  ScratchDir scratch("bench");
  std::string output;
  REQUIRE(run_cli(kTiny + " --methods full,lora,prefix,prompt --json", output, scratch.path) == 0);
  const json::Value report = json::parse(output.substr(output.find("JSON ") + 5), "bench output");
  for (const char* name : {"full", "lora", "prefix", "prompt"}) {
    INFO(name);
    CHECK(report.at(name).as_number() > 0.0);
  }
}

TEST_CASE("bench: a bad method list or a context too short for the methods fails with exit status 2") {
  ScratchDir scratch("bench");
  std::string output;
  CHECK(run_cli(kTiny + " --methods full,nope", output, scratch.path) == 2);
  CHECK(run_cli(kTiny + " --methods ,", output, scratch.path) == 2);
  CHECK(run_cli(kTiny + " --methods full,probe", output, scratch.path) == 2);  // trains nothing below a head
  CHECK(run_cli(kTiny + " --methods full,lora,full", output, scratch.path) == 2);
  CHECK(run_cli(kTiny + " --methods full,lora --method lora", output, scratch.path) == 2);
  CHECK(run_cli(kShape + " --ctx 20 --methods prefix", output, scratch.path) == 2);  // no text beside 20 virtual tokens
}

TEST_CASE("bench and its PyTorch peer train the same parameters for every method (what make bench compares)") {
  if (!ta::testing::torch_available()) {
    MESSAGE("SKIPPED: PyTorch is not installed");
    return;
  }
  ScratchDir scratch("bench");
  const std::string shape = "--vocab 64 --d 16 --layers 2 --heads 2 --batch 2 --steps 1 --warmup 1 --threads 1 --ctx 32 --json";
  auto trainable = [](const std::string& output, const char* key) {
    return json::parse(output.substr(output.find("JSON ") + 5), "bench output").at(key).as_number();
  };
  for (const auto& [ours, peer] : {std::pair<std::string, std::string>{"", ""}, {"--method lora", "--lora 8"},
                                   {"--method prefix", "--prefix 20"}, {"--method prompt", "--prompt 20"}}) {
    CAPTURE(ours);
    std::string our_output;
    REQUIRE(run_cli("bench " + shape + " " + ours, our_output, scratch.path) == 0);
    const std::string peer_path = scratch.file("peer.txt");
    REQUIRE(std::system(("/usr/bin/python3 tools/reference/torch_gpt_train.py " + shape + " " + peer + " >" +
                         peer_path + " 2>/dev/null").c_str()) == 0);
    CHECK(trainable(our_output, "trainable") == trainable(read_file(peer_path), "params_trainable"));
  }
}
