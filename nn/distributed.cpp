// nn/distributed.cpp — see distributed.h.
#include "nn/distributed.h"

#define OMPI_SKIP_MPICXX 1  // the C API only
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "data/io.h"

namespace ta::dist {

namespace {
bool g_active = false;  // MPI_Init was called
int g_rank = 0, g_size = 1;
uint64_t g_bytes = 0;
// A bucket of gradients and where its pieces go back to, reused every step:
// no allocation in the training loop.
struct Piece {
  float* grad;
  size_t offset, count;  // into the bucket
};
std::vector<float> g_bucket;
std::vector<Piece> g_pieces;
}  // namespace

void init(int* argc, char*** argv) {
  if (!std::getenv("OMPI_COMM_WORLD_SIZE")) return;  // not started by mpirun
  MPI_Init(argc, argv);
  g_active = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  if (g_rank != 0 && !std::freopen("/dev/null", "w", stdout)) std::fclose(stdout);
}

void finalize() {
  if (g_active) MPI_Finalize();
  g_active = false;
}

int rank() { return g_rank; }
int world_size() { return g_size; }

void abort_all(const std::string& message, int status) {
  if (!g_active) {
    std::fprintf(stderr, "%s\n", message.c_str());
    std::exit(status);
  }
  std::fprintf(stderr, "tinyadapt: rank %d of %d: %s\n", g_rank, g_size, message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, status);
  std::exit(status);  // not reached
}

std::pair<int, int> shard(int batch, const std::string& what) {
  if (g_size == 1) return {0, batch};
  if (batch < g_size || batch % g_size != 0)
    throw InputError(what + " " + std::to_string(batch) + " cannot be shared equally by " + std::to_string(g_size) +
                     " ranks (it must be a multiple of the number of ranks)");
  const int rows = batch / g_size;
  return {g_rank * rows, (g_rank + 1) * rows};
}

void allreduce_mean_gradients(const std::vector<OptimParam>& params) {
  if (g_size == 1) return;
  g_bucket.resize(kBucketFloats);
  const float scale = 1.0f / static_cast<float>(g_size);
  // The gradients as one stream: parameter k's values follow parameter k-1's.
  // A bucket fills from the stream, is summed over the ranks, and is copied
  // back scaled; a parameter may straddle two buckets.
  std::vector<Piece>& pieces = g_pieces;
  size_t used = 0;
  auto flush = [&] {
    if (used == 0) return;
    MPI_Allreduce(MPI_IN_PLACE, g_bucket.data(), static_cast<int>(used), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    g_bytes += used * sizeof(float);
    for (const Piece& p : pieces)
      for (size_t i = 0; i < p.count; i++) p.grad[i] = g_bucket[p.offset + i] * scale;
    pieces.clear();
    used = 0;
  };
  for (const OptimParam& param : params) {
    Tensor t = param.tensor;
    float* grad = t.grad_or_zeros();
    size_t n = static_cast<size_t>(t.numel());
    while (n > 0) {
      const size_t take = std::min(n, kBucketFloats - used);
      std::copy_n(grad, take, g_bucket.data() + used);
      pieces.push_back({grad, used, take});
      used += take;
      grad += take;
      n -= take;
      if (used == kBucketFloats) flush();
    }
  }
  flush();
}

double allreduce_sum(double value) {
  if (g_size == 1) return value;
  double total = 0;
  MPI_Allreduce(&value, &total, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return total;
}

bool any_rank(bool flag) { return g_size == 1 ? flag : allreduce_sum(flag ? 1.0 : 0.0) > 0.0; }

void barrier() {
  if (g_size > 1) MPI_Barrier(MPI_COMM_WORLD);
}

uint64_t gradient_bytes_reduced() { return g_bytes; }

}  // namespace ta::dist
