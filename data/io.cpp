// data/io.cpp — see io.h.
#include "data/io.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

namespace ta {

std::string read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw InputError(path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw InputError(path + ": not a regular file");
  }
  std::string bytes;
  bytes.reserve(static_cast<size_t>(st.st_size));  // one allocation, not a doubling per chunk
  char chunk[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      throw InputError(path + ": read failed: " + std::strerror(err));
    }
    if (n == 0) break;
    bytes.append(chunk, static_cast<size_t>(n));
  }
  ::close(fd);
  return bytes;
}

static std::string parent_dir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// The PID in BASE.tmp.PID when `name` is a temporary of the file BASE, else 0.
static pid_t temporary_owner(const std::string& name, const std::string& base) {
  const std::string prefix = base + ".tmp.";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return 0;
  if (name[prefix.size()] == '0') return 0;  // std::to_string never writes a leading zero
  long long pid = 0;
  for (size_t i = prefix.size(); i < name.size(); i++) {
    if (name[i] < '0' || name[i] > '9') return 0;
    pid = pid * 10 + (name[i] - '0');
    if (pid > INT_MAX) return 0;
  }
  return static_cast<pid_t>(pid);
}

// Removes PATH.tmp.PID files whose process no longer runs (see io.h). A
// process we may not signal (EPERM) runs, so its file stays.
static void remove_stale_temporaries(const std::string& path) {
  const std::string folder = parent_dir(path);
  const std::string base = path.substr(path.find_last_of('/') + 1);  // npos + 1 == 0: no folder part
  DIR* dir = ::opendir(folder.c_str());
  if (!dir) return;  // the write that follows reports the problem
  std::vector<std::string> stale;
  while (const dirent* entry = ::readdir(dir)) {
    const pid_t pid = temporary_owner(entry->d_name, base);
    if (pid > 0 && pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH) stale.push_back(entry->d_name);
  }
  ::closedir(dir);
  for (const std::string& name : stale) ::unlink((folder + "/" + name).c_str());
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  remove_stale_temporaries(path);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw InputError(path + ": cannot write: " + std::strerror(errno));
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw InputError(path + ": write failed: " + std::strerror(err));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw InputError(path + ": fsync failed: " + std::strerror(errno));
  }
  try {
    rename_durable(tmp, path);
  } catch (const InputError&) {
    ::unlink(tmp.c_str());
    throw;
  }
}

void rename_durable(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    throw InputError(to + ": cannot rename " + from + " to it: " + std::strerror(errno));
  // Make the rename itself durable.
  int dir = ::open(parent_dir(to).c_str(), O_RDONLY | O_DIRECTORY);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

void make_dirs(const std::string& path) {
  if (path.empty()) return;
  std::string partial;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    partial = path.substr(0, slash);
    if (!partial.empty() && ::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST)
      throw InputError(path + ": cannot create directory: " + std::strerror(errno));
    start = slash + 1;
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw InputError(path + ": exists and is not a directory");
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

uint64_t fnv1a64(const void* data, size_t bytes, uint64_t hash) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; i++) hash = (hash ^ p[i]) * 1099511628211ull;  // xor, then multiply by the FNV prime
  return hash;
}

}  // namespace ta
