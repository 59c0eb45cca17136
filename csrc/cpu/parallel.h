// Multi-threading and SIMD dispatch for detkit's CPU kernels.
//
// * parallel_chunks: at::parallel_for is a header template that runs serially unless the including
//   file is compiled with OpenMP, and detkit's extension is not (torch's cpp_extension adds no
//   -fopenmp). parallel_chunks splits [0, size) into chunks that the calling thread and tasks on
//   torch's inter-op thread pool (at::launch) take from a shared counter, so the work spreads over
//   at::get_num_threads() threads whatever the compile flags, with dynamic load balancing. The
//   caller works too and waits only for chunks that another thread has started, so it completes
//   even when the pool is busy (or is the caller); a task that starts late finds no chunk left and
//   touches nothing but the shared counter.
// * DETKIT_TARGET_AVX2 / DETKIT_TARGET_AVX512 and cpu_isa(): the extension is compiled for the
//   baseline x86-64 (SSE2) ISA; a kernel compiled twice more under these function attributes and
//   chosen at run time by cpu_isa() vectorises its channel loops 8 or 16 floats wide where the CPU
//   can. The TU must keep the compiler from contracting a * b + c into a fused multiply-add
//   (`#pragma GCC optimize("fp-contract=off")`) where results must equal a kernel compiled without
//   FMA bit for bit.
#pragma once

#include <ATen/Parallel.h>
#include <c10/util/ParallelGuard.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>

namespace detkit {
namespace cpu {

// body(worker, begin, end): worker in [0, max_workers) identifies the thread, so per-thread scratch
// can be indexed by it (a worker runs its chunks one after the other).
using ChunkBody = std::function<void(int64_t worker, int64_t begin, int64_t end)>;

namespace detail {

struct ChunkQueue {
  const ChunkBody* body = nullptr;  // dereferenced only for a claimed chunk, while the caller waits
  int64_t size = 0, chunk = 1, num_chunks = 0;
  std::atomic<int64_t> next{0};
  std::mutex mutex;
  std::condition_variable finished;
  int64_t done = 0;          // guarded by mutex
  std::exception_ptr error;  // the first exception a chunk raised, guarded by mutex
};

inline void run_chunks(ChunkQueue& queue, int64_t worker) {
  c10::ParallelGuard guard(true);  // ops called from a chunk do not start parallel work themselves
  for (;;) {
    const int64_t index = queue.next.fetch_add(1);
    if (index >= queue.num_chunks) return;
    const int64_t begin = index * queue.chunk, end = std::min(queue.size, begin + queue.chunk);
    std::exception_ptr error;
    try {
      (*queue.body)(worker, begin, end);
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(queue.mutex);
    if (error && !queue.error) queue.error = error;
    if (++queue.done == queue.num_chunks) queue.finished.notify_all();
  }
}

}  // namespace detail

// The number of threads parallel_chunks may use: at::get_num_threads(), or 1 inside a parallel region.
inline int64_t max_workers() { return at::in_parallel_region() ? 1 : std::max(1, at::get_num_threads()); }

// Runs body over [0, size) in chunks of `chunk` items on up to max_workers() threads (serially, as
// one call body(0, 0, size), when there is a single chunk or thread). Rethrows the first exception.
inline void parallel_chunks(int64_t size, int64_t chunk, const ChunkBody& body) {
  if (size <= 0) return;
  chunk = std::max<int64_t>(chunk, 1);
  const int64_t num_chunks = (size + chunk - 1) / chunk;
  const int64_t workers = std::min(max_workers(), num_chunks);
  if (workers <= 1) {
    c10::ParallelGuard guard(true);
    body(0, 0, size);
    return;
  }
  auto queue = std::make_shared<detail::ChunkQueue>();
  queue->body = &body;
  queue->size = size;
  queue->chunk = chunk;
  queue->num_chunks = num_chunks;
  for (int64_t worker = 1; worker < workers; ++worker) {
    at::launch([queue, worker] { detail::run_chunks(*queue, worker); });
  }
  detail::run_chunks(*queue, 0);
  std::unique_lock<std::mutex> lock(queue->mutex);
  queue->finished.wait(lock, [&] { return queue->done == queue->num_chunks; });
  if (queue->error) std::rethrow_exception(queue->error);
}

enum class Isa { kBaseline, kAvx2, kAvx512 };

#if defined(__GNUC__) && defined(__x86_64__)
#define DETKIT_X86_DISPATCH 1
#define DETKIT_TARGET_AVX2 __attribute__((target("avx2")))
#define DETKIT_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,prefer-vector-width=512")))
#define DETKIT_ALWAYS_INLINE inline __attribute__((always_inline))

// The widest of the ISAs above that this CPU (and its OS) supports, detected once.
inline Isa cpu_isa() {
  static const Isa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")) {
      return Isa::kAvx512;
    }
    if (__builtin_cpu_supports("avx2")) return Isa::kAvx2;
    return Isa::kBaseline;
  }();
  return isa;
}
#else
#define DETKIT_ALWAYS_INLINE inline
inline Isa cpu_isa() { return Isa::kBaseline; }
#endif

}  // namespace cpu
}  // namespace detkit
