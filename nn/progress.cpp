// nn/progress.cpp — see progress.h.
#include "nn/progress.h"

#include <unistd.h>

#include <cstdio>

#include "nn/distributed.h"

namespace ta {

Progress::Progress(std::string label, long long total_steps, long long first_step, long long log_every)
    : label_(std::move(label)),
      total_(total_steps),
      first_(first_step),
      log_every_(log_every > 0 ? log_every : 1),
      terminal_(::isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()) {}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

static std::string clock_text(double seconds) {
  long long s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, (s / 60) % 60);
  else std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  return buf;
}

void Progress::update(long long step, float loss, long long tokens, const std::string& extra) {
  tokens_ += tokens;
  if (!dist::is_root()) return;  // under MPI, rank 0 speaks for all
  const long long done = step + 1 - first_, left = total_ - step - 1;
  const double elapsed = elapsed_seconds();
  const double tokens_per_s = elapsed > 0 ? static_cast<double>(tokens_) / elapsed : 0.0;
  const double eta = done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(left) : 0.0;
  if (terminal_) {
    const int width = 24;
    int filled = total_ > 0 ? static_cast<int>(width * (step + 1) / total_) : width;
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r%s [%s] %lld/%lld loss %.4f | %.0f tok/s | ETA %s %s\x1b[K", label_.c_str(),
                 bar.c_str(), step + 1, total_, loss, tokens_per_s, clock_text(eta).c_str(), extra.c_str());
    bar_drawn_ = true;
  } else if ((step + 1) % log_every_ == 0 || step + 1 == total_) {
    std::fprintf(stderr, "%s step %lld/%lld loss %.4f | %.0f tok/s | elapsed %s ETA %s %s\n", label_.c_str(), step + 1,
                 total_, loss, tokens_per_s, clock_text(elapsed).c_str(), clock_text(eta).c_str(), extra.c_str());
  }
  std::fflush(stderr);
}

void Progress::note(const std::string& line) {
  if (!dist::is_root()) return;
  if (bar_drawn_) std::fprintf(stderr, "\n");
  bar_drawn_ = false;
  std::fprintf(stderr, "%s %s\n", label_.c_str(), line.c_str());
  std::fflush(stderr);
}

void Progress::finish() {
  if (bar_drawn_) std::fprintf(stderr, "\n");
  bar_drawn_ = false;
  std::fflush(stderr);
}

}  // namespace ta
