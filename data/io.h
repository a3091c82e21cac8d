// data/io.h — errors for bad input, whole-file reads, atomic writes.
//
// Every file tinyadapt reads goes through here, so every bad input ends the
// same way: an InputError whose message names the file and the problem. The
// command line prints that one line and exits with status 2.
//
// Every file tinyadapt writes goes through write_file_atomic: the bytes go to
// a temporary file in the same folder, are fsync'ed, and are renamed over the
// target, so a process killed at any moment leaves either the old file or the
// new one, never half of one. The temporary is PATH.tmp.PID; one left by a
// killed process stays (it may be large, but nothing reads such names, and
// removing it safely would need to know that PID is not still writing):
// delete `*.tmp.*` files by hand. tests/test_resume.cpp kills savers to check.
#pragma once
#include <stdexcept>
#include <string>

namespace ta {

// Bad input from the user or from a file: message is "what: problem".
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Reads a whole file; throws InputError naming the path if it cannot.
std::string read_file(const std::string& path);

// Writes `bytes` to `path` atomically (temporary file, fsync, rename, fsync dir).
void write_file_atomic(const std::string& path, const std::string& bytes);

// Creates a directory and its parents (as `mkdir -p`); InputError on failure.
void make_dirs(const std::string& path);

bool file_exists(const std::string& path);

}  // namespace ta
