// Attention pooling with one score per frame (DSNet's temporal pooling), forward, on the CPU. No torch in
// here: the caller owns the memory and the threads and hands each thread a range of sequences.
#pragma once

#include <cstdint>

namespace ser_fast {

// One call's inputs and outputs, all contiguous float32 except lengths. Sequence b has scores[b, :T], frames
// x[b, :T, :D] and lengths[b] valid frames (every frame where lengths is null; a length above T counts as T,
// one below 1 gives NaN). Written: weights[b, :T] (the softmax over the valid frames, exactly 0 on the others) and
// mu[b, :D] = sum_t w_t x_t.
struct SharedScoresPool {
  const float* x;
  const float* scores;
  const int64_t* lengths;
  int64_t T;
  int64_t D;
  float* weights;
  float* mu;
};

// Pools sequences [begin, end) with the widest instruction set the CPU supports (or the pinned one, isa.h).
void PoolSharedScores(const SharedScoresPool& pool, int64_t begin, int64_t end);

}  // namespace ser_fast
