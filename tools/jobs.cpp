// tools/jobs.cpp — see jobs.h.
#include "tools/jobs.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "data/io.h"

namespace ta::cli {
namespace {

using Clock = std::chrono::steady_clock;

// Starts one job; its output goes to the job's log.
pid_t start(const Job& job, int threads) {
  std::vector<char*> argv;
  for (const std::string& a : job.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw InputError("cannot start " + job.what + ": fork failed");
  if (pid == 0) {
    if (threads > 0) ::setenv("OMP_NUM_THREADS", std::to_string(threads).c_str(), 1);
    if (std::freopen(job.log_path.c_str(), "w", stdout)) ::dup2(::fileno(stdout), 2);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

}  // namespace

std::vector<JobResult> run_jobs(const std::vector<Job>& jobs, int parallel, int threads_per_job,
                                const std::function<void(size_t, const JobResult&)>& on_done) {
  std::vector<JobResult> results(jobs.size());
  std::vector<bool> started(jobs.size(), false), ended(jobs.size(), false);
  std::map<pid_t, std::pair<size_t, Clock::time_point>> running;  // pid -> (job, start)
  std::string failure;
  size_t next = 0;  // every job before it has started
  while (true) {
    // Start what may start: in order, skipping jobs whose `after` has not ended.
    for (size_t i = next; failure.empty() && i < jobs.size() && static_cast<int>(running.size()) < parallel; i++) {
      if (started[i] || (jobs[i].after >= 0 && !ended[static_cast<size_t>(jobs[i].after)])) continue;
      running[start(jobs[i], parallel > 1 ? threads_per_job : 0)] = {i, Clock::now()};
      started[i] = true;
    }
    while (next < jobs.size() && started[next]) next++;
    if (running.empty()) break;
    int status = 0;
    struct rusage usage {};
    const pid_t pid = ::wait4(-1, &status, 0, &usage);
    if (pid < 0) throw InputError("waiting for a child process failed");
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const auto [i, began] = it->second;
    running.erase(it);
    ended[i] = true;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      if (failure.empty()) failure = "the " + jobs[i].what + " run failed; its output is in " + jobs[i].log_path;
      continue;
    }
    results[i].peak_rss_mb = static_cast<double>(usage.ru_maxrss) / 1024.0;
    results[i].seconds = std::chrono::duration<double>(Clock::now() - began).count();
    on_done(i, results[i]);
  }
  if (!failure.empty()) throw InputError(failure);
  return results;
}

}  // namespace ta::cli
