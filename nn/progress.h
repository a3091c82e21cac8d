// nn/progress.h — what a long-running command shows while it works.
//
// On a terminal: one line redrawn in place, with a bar, the step, the loss,
// tokens per second and the time left. Otherwise (a pipe, a CI log): a plain
// line every `log_every` steps and at the end, so logs stay readable. Under
// MPI only rank 0 shows anything (nn/distributed.h).
#pragma once
#include <chrono>
#include <string>

namespace ta {

class Progress {
 public:
  Progress(std::string label, long long total_steps, long long first_step, long long log_every);
  // Reports step (0-based, just finished) with its loss and the tokens it processed.
  void update(long long step, float loss, long long tokens, const std::string& extra = "");
  // A message on its own line (an evaluation result) without breaking the bar.
  void note(const std::string& line);
  void finish();
  double elapsed_seconds() const;

 private:
  std::string label_;
  long long total_, first_, log_every_;
  bool terminal_;
  bool bar_drawn_ = false;
  long long tokens_ = 0;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace ta
