// nn/distributed.h — data parallelism over MPI (Open MPI, from Debian).
//
// `mpirun -np N tinyadapt pretrain|adapt ...` starts N copies of the program,
// the ranks. Every rank holds the whole model and reads the same data; each
// step, every rank draws the same global batch (the one a single process
// would draw) and keeps its shard, rows [r·B/N, (r+1)·B/N). It computes the
// gradient of its shard's mean loss, and allreduce_mean_gradients averages
// the trainable gradients over the ranks:
//
//   g = (1/N) Σ_r ∇ mean-loss(shard r) = ∇ mean-loss(global batch)
//
// since the shards are equal in size. Frozen parameters have no gradient and
// are never sent: LoRA sends its factors, not the model. Every rank then
// takes the same optimiser step from the same gradient, so the weights stay
// identical on every rank without ever being sent themselves.
//
// Rank 0 alone writes files (checkpoints, logs, metrics, adapters) and
// prints; the other ranks' stdout goes to /dev/null. An error on any rank is
// one line naming the rank, then MPI_Abort ends every rank: the job exits
// non-zero, it never waits for a rank that is gone (mpirun also ends the job
// when a rank dies without a word).
//
// Without mpirun (no OMPI_COMM_WORLD_SIZE in the environment) MPI is never
// initialised: one rank, and every function below is a no-op or the identity.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "nn/optim.h"

namespace ta::dist {

// Called first thing in main: MPI_Init when launched by mpirun (and stdout
// to /dev/null on every rank but 0). finalize() at a normal exit.
void init(int* argc, char*** argv);
void finalize();

int rank();        // 0 without MPI
int world_size();  // 1 without MPI
inline bool is_root() { return rank() == 0; }

// Prints "tinyadapt: rank R of N: message" on stderr and ends every rank with
// `status` (MPI_Abort). Without MPI: prints the message, exits.
[[noreturn]] void abort_all(const std::string& message, int status);

// This rank's rows [begin, end) of a global batch of `batch` rows. InputError
// naming `what` when the ranks cannot share it equally (more ranks than rows,
// or rows that do not divide).
std::pair<int, int> shard(int batch, const std::string& what);

// Averages every parameter's gradient over the ranks, in place (a parameter
// with no gradient buffer yet counts as zeros). The gradients travel as one
// flat stream cut into buckets of kBucketFloats, each one MPI_Allreduce.
constexpr size_t kBucketFloats = size_t{1} << 20;  // 4 MiB
void allreduce_mean_gradients(const std::vector<OptimParam>& params);

// The sum of `value` over the ranks (the step's loss, its token count).
double allreduce_sum(double value);

// True on every rank when `flag` is true on some rank (a Ctrl-C seen by one:
// all ranks must leave the loop at the same step, or the others would wait).
bool any_rank(bool flag);

// Waits for every rank.
void barrier();

// Bytes this rank has handed to MPI_Allreduce for gradients since start-up
// (make bench's bytes per step).
uint64_t gradient_bytes_reduced();

}  // namespace ta::dist
