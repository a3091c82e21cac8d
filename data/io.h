// data/io.h — errors for bad input, whole-file reads, atomic writes.
//
// Every file tinyadapt reads goes through here, so every bad input ends the
// same way: an InputError whose message names the file and the problem. The
// command line prints that one line and exits with status 2.
//
// Every file tinyadapt writes goes through write_file_atomic: the bytes go to
// a temporary file in the same folder, are fsync'ed, and are renamed over the
// target, so a process killed at any moment leaves either the old file or the
// new one, never half of one. The temporary is PATH.tmp.PID. One left by a
// killed process is removed the next time anyone writes PATH: a temporary of
// PATH whose PID no longer runs (kill(PID, 0) fails with ESRCH) can have no
// writer. A PID that runs — this process, another writer, or an unrelated
// process that reused a dead writer's number — keeps its file. The check sees
// the processes of this machine (and PID namespace) only, so two machines or
// containers must not write the same file at once; they would race on the
// rename anyway. tests/test_resume.cpp kills savers to check.
//
// Atomic files are not atomic checkpoints: when two files must agree (a model
// and its optimizer state), the writer orders its writes so that every
// prefix of them is a consistent pair, and the reader checks that they agree
// (nn/trainer.h, save_checkpoint).
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace ta {

// Bad input from the user or from a file: message is "what: problem".
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Reads a whole file; throws InputError naming the path if it cannot.
std::string read_file(const std::string& path);

// Writes `bytes` to `path` atomically (temporary file, fsync, rename, fsync
// dir), first removing stale temporaries of `path` left by dead processes.
void write_file_atomic(const std::string& path, const std::string& bytes);

// rename(2) `from` to `to` (same folder), then fsync the folder so the rename
// survives a power cut; InputError naming both on failure.
void rename_durable(const std::string& from, const std::string& to);

// Creates a directory and its parents (as `mkdir -p`); InputError on failure.
void make_dirs(const std::string& path);

bool file_exists(const std::string& path);

// 64-bit FNV-1a of `bytes` bytes at `data`, continuing from `hash` (chain
// calls to hash several pieces): an identity check — "the same bytes as
// before" — for checkpoints, not a defence against forgery.
constexpr uint64_t kFnv1a64Basis = 14695981039346656037ull;
uint64_t fnv1a64(const void* data, size_t bytes, uint64_t hash = kFnv1a64Basis);

}  // namespace ta
