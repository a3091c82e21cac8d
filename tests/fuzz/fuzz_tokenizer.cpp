// tests/fuzz/fuzz_tokenizer.cpp — libFuzzer target for Tokenizer::load (issue 8).
// fuzz-sources: data/bpe.cpp data/corpus.cpp data/json.cpp data/io.cpp -lpcre2-8
//
// The input is two files: the bytes before the first NUL are vocab.json, the
// bytes after it merges.txt (no NUL: merges.txt is empty). Loading them must
// either succeed or throw ta::InputError: no crash, no sanitizer report, no
// other exception. A tokenizer that loads must round-trip text: decode(encode(s))
// gives s back, special tokens included.
#include <stdlib.h>  // mkdtemp

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "data/bpe.h"
#include "data/io.h"

// One folder per fuzzing process, rewritten for every input (plain writes:
// write_file_atomic's fsync would slow the fuzzer a hundredfold).
static const std::string& scratch_dir() {
  static const std::string dir = [] {
    std::string pattern = "/tmp/ta_fuzz_tokenizer_XXXXXX";
    if (!::mkdtemp(pattern.data())) std::abort();
    return pattern;
  }();
  return dir;
}

static void write_plain(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  write_plain(scratch_dir() + "/vocab.json", input.substr(0, nul));
  write_plain(scratch_dir() + "/merges.txt", nul == std::string::npos ? "" : input.substr(nul + 1));
  try {
    ta::data::Tokenizer tok = ta::data::Tokenizer::load(scratch_dir());
    const std::string text = "Hello, world! \xC3\xBC\xC3\xB1\xC3\xAF 123  \n<|endoftext|>tabs\there";
    if (tok.decode(tok.encode(text)) != text) std::abort();
  } catch (const ta::InputError&) {
  }
  return 0;
}
