// tests/test_bench.cpp — `tinyadapt bench`'s command line, through the binary.
// What it measures is time, which tests never check; these check that each
// mode runs the setups it names and reports them, and that bad lists fail.
#include <doctest/doctest.h>

#include <string>

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
