// tools/jobs.h — running commands as child processes, several at a time
// (compare runs each adaptation as its own `tinyadapt adapt` process, so
// that its peak memory and train time are its own).
//
// A job may wait for an earlier one (LP-FT's fine-tuning starts from its
// probe's adapter). With `parallel` > 1 the jobs share the machine's cores:
// each child is started with OMP_NUM_THREADS = threads_per_job, so two
// one-thread runs fill two cores, which for a small model does more work per
// second than one run on two threads (measured in tools/experiments/FINDINGS.md).
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace ta::cli {

struct Job {
  std::vector<std::string> argv;  // argv[0] is the program's path
  std::string log_path;           // the child's stdout and stderr
  std::string what;               // names the job in messages: "lora seed 1337"
  int after = -1;                 // the index of a job that must end first; -1 = none
};

struct JobResult {
  double peak_rss_mb = 0;  // the child's peak resident memory (wait4's ru_maxrss)
  double seconds = 0;      // wall time from start to end
};

// Runs every job, at most `parallel` at once, in order as far as each job's
// `after` allows; `on_done(i, result)` is called as job i ends. When a job
// fails, no further job starts, the running ones are waited for, and an
// InputError names the failed job and its log.
std::vector<JobResult> run_jobs(const std::vector<Job>& jobs, int parallel, int threads_per_job,
                                const std::function<void(size_t, const JobResult&)>& on_done);

}  // namespace ta::cli
