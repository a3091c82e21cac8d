#!/usr/bin/env bash
# tools/fuzz.sh — builds and runs the libFuzzer targets in tests/fuzz/ (issue 8).
#
#   tools/fuzz.sh                   every target, FUZZ_RUNS inputs each (default 100000)
#   tools/fuzz.sh json safetensors  only the targets named
#   FUZZ_RUNS=1000000 tools/fuzz.sh
#
# A target is tests/fuzz/fuzz_<name>.cpp defining LLVMFuzzerTestOneInput plus
# one line naming the library files it links, for example
#   // fuzz-sources: data/json.cpp data/io.cpp
# Its seed inputs live in tests/fuzz/corpus/<name>/ and, optionally, a libFuzzer
# dictionary of tokens in tests/fuzz/<name>.dict. Dropping those files in is
# all it takes to add a target.
#
# Each target is built with clang++ under AddressSanitizer and
# UndefinedBehaviorSanitizer into build/fuzz/. Inputs the fuzzer finds
# interesting are kept in build/fuzz/corpus/<name>/ (not committed: the seeds
# stay small and reviewed). An input that crashes, hangs, leaks or trips a
# sanitizer is saved as build/fuzz/<name>-crash-* (or -timeout-, -leak-, -oom-)
# and the script exits non-zero after running the remaining targets;
# re-run it alone with `build/fuzz/fuzz_<name> FILE`.
set -uo pipefail
cd "$(dirname "$0")/.."

runs=${FUZZ_RUNS:-100000}
cxx=${FUZZ_CXX:-clang++}
# The project's inputs are small; 64 KB is room for many tensors or a deep
# JSON document while keeping each run fast.
max_len=${FUZZ_MAX_LEN:-65536}
command -v "$cxx" >/dev/null || { echo "fuzz: $cxx not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }

failed=()
for target in tests/fuzz/fuzz_*.cpp; do
  name=$(basename "$target" .cpp)
  name=${name#fuzz_}
  if [[ $# -gt 0 && " $* " != *" $name "* ]]; then continue; fi

  sources=$(sed -n 's|^// fuzz-sources:||p' "$target")
  if [[ -z $sources ]]; then
    echo "fuzz: $target has no '// fuzz-sources: ...' line" >&2
    failed+=("$name"); continue
  fi
  mkdir -p "build/fuzz/corpus/$name"
  echo "fuzz: building $name from $target$sources"
  # shellcheck disable=SC2086  # $sources is a list of file names
  if ! "$cxx" -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=undefined -fno-omit-frame-pointer -I. \
        "$target" $sources -o "build/fuzz/fuzz_$name"; then
    failed+=("$name"); continue
  fi

  options=(-runs="$runs" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048
           -print_final_stats=1 -artifact_prefix="build/fuzz/$name-")
  [[ -f tests/fuzz/$name.dict ]] && options+=(-dict="tests/fuzz/$name.dict")
  seeds=()
  [[ -d tests/fuzz/corpus/$name ]] && seeds=("tests/fuzz/corpus/$name")
  echo "fuzz: running $name for $runs inputs"
  # The first corpus folder receives new inputs; the committed seeds are only read.
  if ! "build/fuzz/fuzz_$name" "${options[@]}" "build/fuzz/corpus/$name" "${seeds[@]}"; then
    failed+=("$name")
  fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs saved as build/fuzz/<name>-*)" >&2
  exit 1
fi
echo "fuzz: every target ran $runs inputs without a finding"
