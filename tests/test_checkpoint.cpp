// tests/test_checkpoint.cpp — the pieces that make a checkpoint survive a
// kill, tested in-process (issue 8): write_file_atomic's removal of dead
// processes' temporaries, and fnv1a64.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "data/io.h"
#include "tests/helpers.h"

using namespace ta;
using ta::testing::ScratchDir;

TEST_CASE("fnv1a64: the published values of \"\" and \"a\"; chained calls hash the concatenation") {
  CHECK(fnv1a64("", 0) == 0xcbf29ce484222325ull);
  CHECK(fnv1a64("a", 1) == 0xaf63dc4c8601ec8cull);
  CHECK(fnv1a64("bc", 2, fnv1a64("a", 1)) == fnv1a64("abc", 3));
}

TEST_CASE("write_file_atomic: removes its target's temporaries left by dead processes, never a live process's") {
  // A process that has ended (reaped, so its PID is free) and one that runs.
  std::fflush(nullptr);
  const pid_t dead = ::fork();
  REQUIRE(dead >= 0);
  if (dead == 0) ::_exit(0);
  REQUIRE(::waitpid(dead, nullptr, 0) == dead);
  const pid_t live = ::fork();
  REQUIRE(live >= 0);
  if (live == 0) {
    for (;;) ::pause();
  }

  ScratchDir dir("stale");
  const std::string target = dir.file("model.safetensors");
  const std::string dead_tmp = target + ".tmp." + std::to_string(dead);
  const std::vector<std::string> kept = {
      target + ".tmp." + std::to_string(live),          // a writer that still runs
      target + ".tmp.1",                                // init runs (EPERM or not, it is alive)
      dir.file("config.json.tmp." + std::to_string(dead)),  // another file's temporary
      target + ".tmp.0" + std::to_string(dead),         // not a name write_file_atomic makes
      target + ".tmp." + std::to_string(dead) + "x",
      target + ".tmp.99999999999",                      // past any PID
  };
  write_file_atomic(dead_tmp, "half a file");
  for (const std::string& path : kept) write_file_atomic(path, "someone's bytes");

  write_file_atomic(target, "the new file");
  CHECK_FALSE(file_exists(dead_tmp));
  for (const std::string& path : kept) {
    CAPTURE(path);
    CHECK(read_file(path) == "someone's bytes");
  }
  CHECK(read_file(target) == "the new file");
  CHECK_FALSE(file_exists(target + ".tmp." + std::to_string(::getpid())));

  ::kill(live, SIGKILL);
  ::waitpid(live, nullptr, 0);
}
