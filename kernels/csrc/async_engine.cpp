#include "async_engine.hpp"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <chrono>
#include <cmath>
#include <cstring>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#define EVS_INLINE inline __attribute__((always_inline))

namespace evs::async {

namespace {

void require(bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
}

// Weights are packed in panels of kPanel output columns (see pack_panels): a product sweeping the
// input channels for a block of columns reads one contiguous stretch of memory, which the
// hardware prefetchers follow (read row by row, the same sweep jumps cout floats per channel and
// the big layers wait on their weights).

// RB rows x CB columns of out += in . w, accumulated in registers: panel columns [jj, jj + CB) of
// the panel at pw (ldw columns wide), output columns from p0 + jj.
template <int RB, int CB, int LDW = 0>
EVS_INLINE void gemm_block(const float* const* a, float* const* c, const float* pw, int cin, int ldw, int jj,
                           int p0) {
    if constexpr (LDW > 0) ldw = LDW;  // a full panel: the stride known at compile time
    float acc[RB][CB] = {};
    for (int k = 0; k < cin; ++k) {
        const float* wr = pw + size_t(k) * size_t(ldw) + size_t(jj);
        for (int r = 0; r < RB; ++r) {
            const float x = a[r][k];
            for (int j = 0; j < CB; ++j) acc[r][j] += x * wr[j];
        }
    }
    for (int r = 0; r < RB; ++r)
        for (int j = 0; j < CB; ++j) c[r][p0 + jj + j] += acc[r][j];
}

// The panel of a packed cin x cout matrix that holds output column j: its weights, its width, the
// part of [j, j_end) it holds (first and end column, within the panel) and its first output
// column. Callers loop over the panels themselves: a callback (lambda) would not inherit the
// instruction set the products are compiled for.
struct PanelSpan {
    const float* w;
    int width, first, end, p0;
};

EVS_INLINE PanelSpan panel_at(const float* w, int cin, int cout, int j, int j_end) {
    const int p = j / kPanel, p0 = p * kPanel;
    const int width = std::min(kPanel, cout - p0), end = std::min(j_end, p0 + width);
    return {w + size_t(p) * size_t(cin) * size_t(kPanel), width, j - p0, end - p0, p0};
}

// Columns [j_begin, j_end) of RB rows.
template <int RB, int CB>
EVS_INLINE void gemm_rows_block(const float* const* a, float* const* c, const float* w, int cin, int cout, int j_begin,
                                int j_end) {
    for (int j = j_begin; j < j_end;) {
        const PanelSpan ps = panel_at(w, cin, cout, j, j_end);
        const float* pw = ps.w;
        const int ldw = ps.width, jend = ps.end, p0 = ps.p0;
        int jj = ps.first;
        j = p0 + jend;
        if (ldw == kPanel)  // a full panel (all but the last when cout is no multiple of kPanel)
            for (; jj + CB <= jend; jj += CB) gemm_block<RB, CB, kPanel>(a, c, pw, cin, ldw, jj, p0);
        else
            for (; jj + CB <= jend; jj += CB) gemm_block<RB, CB>(a, c, pw, cin, ldw, jj, p0);
        if constexpr (CB > 16)
            for (; jj + 16 <= jend; jj += 16) gemm_block<RB, 16>(a, c, pw, cin, ldw, jj, p0);
        for (; jj + 8 <= jend; jj += 8) gemm_block<RB, 8>(a, c, pw, cin, ldw, jj, p0);
        if (jj == jend) continue;
        for (int r = 0; r < RB; ++r)
            for (int k = 0; k < cin; ++k) {
                const float x = a[r][k];
                const float* wr = pw + size_t(k) * size_t(ldw);
                for (int q = jj; q < jend; ++q) c[r][p0 + q] += x * wr[q];
            }
    }
}

// Blocks of RB rows share each weight they load. The products are memory-bound on the weights,
// so the last rows go in one block padded with zero rows (written to a scratch row) rather than
// one by one: the weights are read once more instead of once per remaining row. One or two
// remaining rows are cheaper on their own than padded.
template <int PB, int CB>
EVS_INLINE void gemm_padded(size_t m, const float* const* a, float* const* c, const float* w, int cin, int cout,
                            int j0, int j1) {
    thread_local std::vector<float> zeros, sink;
    if (zeros.size() < size_t(cin)) zeros.assign(size_t(cin), 0.0f);
    if (sink.size() < size_t(cout)) sink.assign(size_t(cout), 0.0f);
    const float* pa[PB];
    float* pc[PB];
    for (size_t i = 0; i < size_t(PB); ++i) {
        pa[i] = i < m ? a[i] : zeros.data();
        pc[i] = i < m ? c[i] : sink.data();
    }
    gemm_rows_block<PB, CB>(pa, pc, w, cin, cout, j0, j1);
}

template <int RB, int CB>
EVS_INLINE void gemm_impl(size_t m, const float* const* a, float* const* c, const float* w, int cin, int cout, int j0,
                          int j1) {
    size_t r = 0;
    for (; r + RB <= m; r += RB) gemm_rows_block<RB, CB>(a + r, c + r, w, cin, cout, j0, j1);
    const size_t rest = m - r;
    if constexpr (RB > 8) {
        if (rest > 8) return gemm_padded<RB, CB>(rest, a + r, c + r, w, cin, cout, j0, j1);
    }
    if constexpr (RB > 4) {
        if (rest > 4) return gemm_padded<(RB < 8 ? RB : 8), CB>(rest, a + r, c + r, w, cin, cout, j0, j1);
    }
    if (rest > 2) return gemm_padded<4, CB>(rest, a + r, c + r, w, cin, cout, j0, j1);
    for (; r < m; ++r) gemm_rows_block<1, CB>(a + r, c + r, w, cin, cout, j0, j1);
}

// Rows that skip their zero channels: a row's products load one weight row per non-zero channel
// and cannot share the loads with other rows (their channels differ), so per multiply-add they
// run at about half the speed of the register blocks above. Output columns stay in registers a
// panel at a time; U rows of weights are summed into separate accumulators (independent
// multiply-add chains), added at the end.
// Rows are padded to a multiple of kSparsePad channels (zero values) and hold at least one non-zero
// one, so U (a divisor of the padding) needs no remainder loop, and the first U channels set the
// accumulators (zeroing them first compiled to a memset through the stack).
template <int U>
EVS_INLINE void sparse_panel(const SparseRow& row, float* c, const float* pw) {
    static_assert(kSparsePad % U == 0, "the unrolling must divide the row padding");
    float acc[U][kPanel];
    const int32_t* idx = row.idx;
    const float* val = row.val;
    for (int u = 0; u < U; ++u) {
        const float x = val[u];
        const float* wr = pw + size_t(idx[u]) * size_t(kPanel);
        for (int q = 0; q < kPanel; ++q) acc[u][q] = x * wr[q];
    }
    for (int t = U; t < row.n; t += U)
        for (int u = 0; u < U; ++u) {
            const float x = val[t + u];
            const float* wr = pw + size_t(idx[t + u]) * size_t(kPanel);
            for (int q = 0; q < kPanel; ++q) acc[u][q] += x * wr[q];
        }
    for (int q = 0; q < kPanel; ++q) {
        float sum = acc[0][q];
        for (int u = 1; u < U; ++u) sum += acc[u][q];
        c[q] += sum;
    }
}

template <int U>
EVS_INLINE void sparse_impl(size_t m, const SparseRow* rows, float* const* c, const float* w, int cin, int cout, int j0,
                            int j1) {
    for (size_t r = 0; r < m; ++r)  // the lists' contract (checked in the sanitizer builds)
        assert(rows[r].n >= kSparsePad && rows[r].n % kSparsePad == 0);
    for (int j = j0; j < j1;) {
        const PanelSpan ps = panel_at(w, cin, cout, j, j1);
        j = ps.p0 + ps.end;
        if (ps.width == kPanel && ps.first == 0 && ps.end == kPanel) {
            for (size_t r = 0; r < m; ++r) sparse_panel<U>(rows[r], c[r] + ps.p0, ps.w);
            continue;
        }
        for (size_t r = 0; r < m; ++r)  // part of a panel
            for (int t = 0; t < rows[r].n; ++t) {
                const float x = rows[r].val[t];
                const float* wr = ps.w + size_t(rows[r].idx[t]) * size_t(ps.width);
                for (int q = ps.first; q < ps.end; ++q) c[r][ps.p0 + q] += x * wr[q];
            }
    }
}

// Accumulators per panel row (each a row of kPanel floats): AVX-512 4 (8 of 32 registers: enough
// independent multiply-add chains to hide their latency); AVX2 2 (4 would take all 16 registers);
// portable 2, although with SSE2 two rows already take all 16 registers: measured, 1 was 2-5x
// slower.
constexpr int kSparseUnrollPortable = 2, kSparseUnrollAvx2 = 2, kSparseUnrollAvx512 = 4;

using GemmFn = void (*)(size_t, const float* const*, float* const*, const float*, int, int, int, int);
using SparseFn = void (*)(size_t, const SparseRow*, float* const*, const float*, int, int, int, int);
using NonzeroFn = uint32_t (*)(const float*, int, int32_t*, float*);

// The non-zero channels of x[0, cin) (NaN counts as non-zero, -0 as zero): their indices,
// ascending, into idx and their values into val (room for cin entries each); returns how many.
// Branch-free: every channel is written, the non-zero ones kept.
EVS_INLINE uint32_t nonzero_impl(const float* x, int cin, int c, uint32_t n, int32_t* idx, float* val) {
    for (; c < cin; ++c) {
        idx[n] = c;
        val[n] = x[c];
        n += x[c] != 0.0f;
    }
    return n;
}

uint32_t nonzero_portable(const float* x, int cin, int32_t* idx, float* val) {
    return nonzero_impl(x, cin, 0, 0, idx, val);
}

void gemm_portable(size_t m, const float* const* a, float* const* c, const float* w, int cin, int cout, int j0, int j1) {
    gemm_impl<2, 32>(m, a, c, w, cin, cout, j0, j1);
}
void sparse_portable(size_t m, const SparseRow* rows, float* const* c, const float* w, int cin, int cout, int j0,
                     int j1) {
    sparse_impl<kSparseUnrollPortable>(m, rows, c, w, cin, cout, j0, j1);
}

// The products are also compiled for AVX2+FMA and AVX-512 and the best the CPU runs is picked at
// load time, so portable builds stay fast. Block sizes were measured on the N-Caltech101 VGG
// (1-event steps, set_gemm_kernel on an AVX-512 machine): AVX-512 12x32 (24 of 32 registers hold
// sums) 2.8 ms per update against 8x32 3.2 ms; AVX2 3x32 4.5 ms against 4x32 (16 sums in 16
// registers, spilling) 6.2 ms, 2x32 7.9 ms, 6x16 11 ms. Portable (x86-64 baseline, SSE2) 2x32: with
// every row multiplied in full (channel_skip 0) 10.0-14.7 ms per update against 16.2-20.8 ms for
// 3x16 (four alternating runs each; 1x32 the same as 2x32, 2x16 and 4x8 about 3x slower in a
// product-only test).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && __GNUC__ >= 12
#define EVS_X86_LEVELS 1
__attribute__((target("arch=x86-64-v3"))) void gemm_avx2(size_t m, const float* const* a, float* const* c,
                                                           const float* w, int cin, int cout, int j0, int j1) {
    gemm_impl<3, 32>(m, a, c, w, cin, cout, j0, j1);
}
__attribute__((target("arch=x86-64-v4"))) void gemm_avx512(size_t m, const float* const* a, float* const* c,
                                                             const float* w, int cin, int cout, int j0, int j1) {
    gemm_impl<12, 32>(m, a, c, w, cin, cout, j0, j1);
}
__attribute__((target("arch=x86-64-v3"))) void sparse_avx2(size_t m, const SparseRow* rows, float* const* c,
                                                             const float* w, int cin, int cout, int j0, int j1) {
    sparse_impl<kSparseUnrollAvx2>(m, rows, c, w, cin, cout, j0, j1);
}
__attribute__((target("arch=x86-64-v4"))) void sparse_avx512(size_t m, const SparseRow* rows, float* const* c,
                                                               const float* w, int cin, int cout, int j0, int j1) {
    sparse_impl<kSparseUnrollAvx512>(m, rows, c, w, cin, cout, j0, j1);
}
// 16 channels per step: compressed in registers, stored whole (the compressing store to memory
// is slow on some CPUs); a step's store ends at most at channel c + 16 <= cin, inside the room.
__attribute__((target("arch=x86-64-v4"))) uint32_t nonzero_avx512(const float* x, int cin, int32_t* idx,
                                                                    float* val) {
    uint32_t n = 0;
    int c = 0;
    __m512i channels = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (; c + 16 <= cin; c += 16) {
        const __m512 v = _mm512_loadu_ps(x + c);
        const __mmask16 keep = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NEQ_UQ);
        _mm512_storeu_ps(val + n, _mm512_maskz_compress_ps(keep, v));
        _mm512_storeu_si512(idx + n, _mm512_maskz_compress_epi32(keep, channels));
        n += uint32_t(__builtin_popcount(keep));
        channels = _mm512_add_epi32(channels, _mm512_set1_epi32(16));
    }
    return nonzero_impl(x, cin, c, n, idx, val);
}
#endif

struct Kernel {
    const char* name;
    GemmFn fn;
    SparseFn sparse;
    NonzeroFn nonzero;  // lists a row's non-zero channels (for sparse)
    bool (*supported)();
};

bool always() { return true; }
#ifdef EVS_X86_LEVELS
bool has_v3() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("x86-64-v3");
}
bool has_v4() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("x86-64-v4");
}
#endif

// Best first.
constexpr Kernel kKernels[] = {
#ifdef EVS_X86_LEVELS
    {"avx512", gemm_avx512, sparse_avx512, nonzero_avx512, has_v4},
    {"avx2", gemm_avx2, sparse_avx2, nonzero_portable, has_v3},  // (no compress instruction)
#endif
    {"portable", gemm_portable, sparse_portable, nonzero_portable, always},
};

// The kernel in use: the best the CPU runs, unless set_gemm_kernel chose another.
std::atomic<const Kernel*>& current_kernel() {
    static std::atomic<const Kernel*> k{[] {
        for (const Kernel& c : kKernels)
            if (c.supported()) return &c;
        return &kKernels[std::size(kKernels) - 1];
    }()};
    return k;
}

}  // namespace

AlignedFloats pack_panels(const std::vector<float>& w, int blocks, int cin, int cout) {
    AlignedFloats packed(w.size());
    const size_t block = size_t(cin) * size_t(cout);
    for (int b = 0; b < blocks; ++b) {
        const float* src = w.data() + size_t(b) * block;
        float* dst = packed.data() + size_t(b) * block;
        for (int p0 = 0; p0 < cout; p0 += kPanel) {
            const int width = std::min(kPanel, cout - p0);
            float* panel = dst + size_t(p0) * size_t(cin);
            for (int k = 0; k < cin; ++k)
                std::copy(src + size_t(k) * size_t(cout) + size_t(p0), src + size_t(k) * size_t(cout) + size_t(p0 + width),
                          panel + size_t(k) * size_t(width));
        }
    }
    return packed;
}

void gemm_rows(size_t m, const float* const* a, float* const* c, const float* w, int cin, int cout, int j0, int j1) {
    current_kernel().load(std::memory_order_relaxed)->fn(m, a, c, w, cin, cout, j0, j1);
}

void sparse_rows(size_t m, const SparseRow* rows, float* const* out_rows, const float* w, int cin, int cout, int j0,
                 int j1) {
    current_kernel().load(std::memory_order_relaxed)->sparse(m, rows, out_rows, w, cin, cout, j0, j1);
}

uint32_t nonzero_channels(const float* x, int cin, int32_t* idx, float* val) {
    return current_kernel().load(std::memory_order_relaxed)->nonzero(x, cin, idx, val);
}

const char* gemm_kernel() { return current_kernel().load()->name; }

std::vector<std::string> gemm_kernels() {
    std::vector<std::string> out;
    for (const Kernel& k : kKernels)
        if (k.supported()) out.emplace_back(k.name);
    return out;
}

void set_gemm_kernel(const std::string& name) {
    for (const Kernel& k : kKernels)
        if (name == k.name) {
            if (!k.supported()) throw std::invalid_argument("this CPU cannot run the " + name + " products");
            current_kernel().store(&k);
            return;
        }
    std::string known;
    for (const Kernel& k : kKernels) known += std::string(known.empty() ? "" : ", ") + k.name;
    throw std::invalid_argument("unknown product kernel '" + name + "' (built: " + known + ")");
}

// --------------------------------------------------------------------------------------------
// Workers

Workers::Workers(int threads) {
    for (int i = 1; i < threads; ++i) threads_.emplace_back([this, i] { loop(i); });
}

Workers::~Workers() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
        generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
}

void Workers::run(const std::function<void(int, int)>& task) {
    if (threads_.empty()) {
        task(0, 1);
        return;
    }
    task_ = &task;
    pending_.store(int(threads_.size()), std::memory_order_relaxed);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();  // no system call while the workers are still spinning
    task(0, size());
    while (pending_.load(std::memory_order_acquire) != 0) cpu_relax();
}

void Workers::loop(int id) {
    uint64_t seen = 0;
    for (;;) {
        // Spin briefly (the layers of one update follow each other within microseconds), then sleep.
        const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicroseconds);
        for (int i = 0; generation_.load(std::memory_order_acquire) == seen; ++i) {
            cpu_relax();
            if ((i & 63) == 63 && std::chrono::steady_clock::now() > until) {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
                break;
            }
        }
        seen = generation_.load(std::memory_order_acquire);
        if (stop_) return;
        (*task_)(id, size());
        pending_.fetch_sub(1, std::memory_order_release);
    }
}

void Map::allocate(int h, int w, int c) {
    height = h;
    width = w;
    channels = c;
    values.assign(size_t(h) * size_t(w) * size_t(c), 0.0f);
    active.assign(size_t(h) * size_t(w), 0);
}

void SiteSet::clear() {
    list.clear();
    if (++epoch_ == 0) {  // wrapped after 2^32 updates: forget every stamp once
        std::fill(stamp_.begin(), stamp_.end(), 0u);
        epoch_ = 1;
    }
}

// --------------------------------------------------------------------------------------------
// Convolution

ConvLayer::ConvLayer(int in_h, int in_w, int cin, int cout, int ksize, int stride, int padding, ConvMode mode,
                     bool relu, std::vector<float> weights, std::vector<float> bias)
    : in_h_(in_h), in_w_(in_w), cin_(cin), cout_(cout), k_(ksize), s_(stride), p_(padding), mode_(mode),
      relu_(relu), b_(std::move(bias)) {
    require(cin > 0 && cout > 0, "convolution channels must be positive");
    require(ksize > 0 && stride > 0 && padding >= 0 && padding < ksize, "bad convolution geometry");
    require(weights.size() == size_t(ksize) * size_t(ksize) * size_t(cin) * size_t(cout),
            "convolution weights must have ksize*ksize*cin*cout values");
    require(b_.size() == size_t(cout), "convolution bias must have cout values");
    w_ = pack_panels(weights, ksize * ksize, cin, cout);
    int oh = (in_h + 2 * padding - ksize) / stride + 1, ow = (in_w + 2 * padding - ksize) / stride + 1;
    if (mode == ConvMode::Submanifold) {
        require(stride == 1 && 2 * padding + 1 == ksize, "a submanifold convolution keeps the map size");
        oh = in_h;
        ow = in_w;
    }
    require(in_h + 2 * padding >= ksize && in_w + 2 * padding >= ksize, "convolution window larger than its input");
    out_.allocate(oh, ow, cout);
    pre_.assign(size_t(oh) * size_t(ow) * size_t(cout), 0.0f);
    if (mode == ConvMode::Sparse) in_count_.assign(size_t(oh) * size_t(ow), 0);
    touched_.resize(oh * ow);
    cone_.resize(oh * ow);
    status_.assign(size_t(oh) * size_t(ow), None);
    in_rows_.resize(in_h * in_w);
    in_row_.resize(size_t(in_h) * size_t(in_w));
    a_rows_.resize(size_t(ksize) * size_t(ksize));
    c_rows_.resize(size_t(ksize) * size_t(ksize));
    sc_rows_.resize(size_t(ksize) * size_t(ksize));
    s_rows_.resize(size_t(ksize) * size_t(ksize));
    refs_.resize(size_t(ksize) * size_t(ksize));
    old_.resize(size_t(cout));
    reset();
}

std::string ConvLayer::kind() const {
    switch (mode_) {
        case ConvMode::Submanifold:
            return "submanifold_conv";
        case ConvMode::Sparse:
            return "sparse_conv";
        default:
            return "dense_conv";
    }
}

void ConvLayer::reset() {
    std::fill(out_.active.begin(), out_.active.end(), 0);
    std::fill(in_count_.begin(), in_count_.end(), 0);
    if (mode_ != ConvMode::Dense) {
        std::fill(pre_.begin(), pre_.end(), 0.0f);
        std::fill(out_.values.begin(), out_.values.end(), 0.0f);
        return;
    }
    // A dense convolution of an empty map is its bias everywhere.
    const int sites = out_.sites();
    for (int o = 0; o < sites; ++o) {
        std::copy(b_.begin(), b_.end(), pre_.begin() + ptrdiff_t(o) * cout_);
        float* z = out_.row(o);
        for (int c = 0; c < cout_; ++c) z[c] = relu_ && b_[size_t(c)] < 0 ? 0.0f : b_[size_t(c)];
        out_.active[size_t(o)] = 1;
    }
}

// Calls f(offset, out_site) for every output whose window holds input site `in_site`.
template <typename F>
void ConvLayer::for_outputs(int32_t in_site, F f) const {
    const int cy = in_site / in_w_, cx = in_site % in_w_;
    const int oh = out_.height, ow = out_.width;
    for (int dy = 0; dy < k_; ++dy) {
        const int ny = cy + p_ - dy;
        if (ny < 0 || ny % s_) continue;
        const int oy = ny / s_;
        if (oy >= oh) continue;
        for (int dx = 0; dx < k_; ++dx) {
            const int nx = cx + p_ - dx;
            if (nx < 0 || nx % s_) continue;
            const int ox = nx / s_;
            if (ox >= ow) continue;
            f(dy * k_ + dx, oy * ow + ox);
        }
    }
}

int32_t ConvLayer::add_row(const float* x, bool listed) {
    const auto row = int32_t(rows_.size());
    if (!listed) {  // multiplied in full
        rows_.push_back({x, 0, uint32_t(cin_)});
        return row;
    }
    // The lists only grow (doubling), so most updates neither allocate nor clear them.
    const size_t begin = nz_used_, need = begin + size_t(cin_) + kSparsePad;
    if (nz_idx_.size() < need) {
        nz_idx_.resize(2 * need);
        nz_val_.resize(2 * need);
    }
    int32_t* idx = nz_idx_.data() + begin;
    float* val = nz_val_.data() + begin;
    const uint32_t n = nonzero_channels(x, cin_, idx, val);
    const uint32_t padded = padded_length(n);
    for (uint32_t t = n; t < padded; ++t) {  // padding: zero values
        idx[t] = 0;
        val[t] = 0.0f;
    }
    nz_used_ += padded;
    rows_.push_back({x, begin, n});
    return row;
}

void ConvLayer::update(const Map& in, const Changes& changes, Changes& out_changes) {
    counts = Counts{};
    counts.changed_in = changes.size();
    out_changes.clear(cout_);
    touched_.clear();
    pairs_.clear();
    const size_t n = changes.size();
    delta_.resize(n * size_t(cin_));
    for (size_t i = 0; i < n; ++i) {
        const int32_t site = changes.sites[i];
        const float* now = in.row(site);
        const float* old = changes.old_values.data() + i * size_t(cin_);
        float* d = delta_.data() + i * size_t(cin_);
        for (int c = 0; c < cin_; ++c) d[c] = now[c] - old[c];
        const int activity = int(in.active[size_t(site)]) - int(changes.was_active[i]);
        for_outputs(site, [&](int offset, int32_t o) {
            touched_.insert(o);
            pairs_.push_back({int32_t(i), offset, o});
            if (mode_ == ConvMode::Sparse) in_count_[size_t(o)] += activity;
        });
    }
    for (int32_t o : touched_.list) {
        const bool was = out_.active[size_t(o)];
        const bool now = mode_ == ConvMode::Submanifold ? in.active[size_t(o)] != 0
                         : mode_ == ConvMode::Sparse    ? in_count_[size_t(o)] > 0
                                                        : true;
        status_[size_t(o)] = was && now ? Persist : now ? New : was ? Removed : None;
    }
    // Collect the products: per kernel offset, the source rows and the outputs they add into.
    rows_.clear();
    nz_used_ = 0;
    const bool skipping = channel_skip > 0.0f;  // 0: every row in full, as the paper counts
    in_rows_.clear();
    for (auto& r : refs_) r.clear();
    // Outputs that stay active: out += W_k (x_new - x_old), row i the difference of change i.
    uint64_t delta_rules = 0;
    for (const Pair& pr : pairs_) {
        if (status_[size_t(pr.out)] != Persist) continue;
        refs_[size_t(pr.offset)].push_back({pr.change, pre_.data() + size_t(pr.out) * size_t(cout_)});
        ++delta_rules;
    }
    if (delta_rules)  // (not in a batch, where every output is new)
        for (size_t i = 0; i < n; ++i) add_row(delta_.data() + i * size_t(cin_), skipping);
    // Outputs that become active: bias + the whole window; outputs that become inactive: zero.
    uint64_t new_rules = 0;
    const int ow = out_.width;
    for (int32_t o : touched_.list) {
        float* pre = pre_.data() + size_t(o) * size_t(cout_);
        if (status_[size_t(o)] == Removed) {
            std::fill(pre, pre + cout_, 0.0f);
            continue;
        }
        if (status_[size_t(o)] != New) continue;
        std::copy(b_.begin(), b_.end(), pre);
        const int oy = o / ow, ox = o % ow;
        for (int dy = 0; dy < k_; ++dy) {
            const int iy = oy * s_ - p_ + dy;
            if (iy < 0 || iy >= in_h_) continue;
            for (int dx = 0; dx < k_; ++dx) {
                const int ix = ox * s_ - p_ + dx;
                if (ix < 0 || ix >= in_w_) continue;
                const int32_t i = iy * in_w_ + ix;
                if (!in.active[size_t(i)]) continue;
                if (in_rows_.insert(i)) in_row_[size_t(i)] = add_row(in.row(i), skipping);
                refs_[size_t(dy * k_ + dx)].push_back({in_row_[size_t(i)], pre});
                ++new_rules;
            }
        }
    }
    // Each row is multiplied in full (register blocks sharing weight loads) or, when few of its
    // channels are non-zero (and its padded list is shorter than the row), over those channels
    // only; when skipping, an all-zero row adds nothing and is left out. FLOPs count the non-zero
    // channels multiplied, not the padding (as the register blocks' padding rows are not counted).
    const auto skip_limit = uint32_t(channel_skip * float(cin_));
    uint64_t channels_multiplied = 0;
    const size_t kk = size_t(k_) * size_t(k_);
    for (size_t off = 0; off < kk; ++off) {
        a_rows_[off].clear();
        c_rows_[off].clear();
        s_rows_[off].clear();
        sc_rows_[off].clear();
        for (const RowRef& ref : refs_[off]) {
            const Row& row = rows_[size_t(ref.row)];
            const uint32_t nz = row.nz, len = padded_length(nz);
            if (skipping && nz == 0) continue;
            if (nz <= skip_limit && len < uint32_t(cin_)) {  // (never when not skipping: nz = cin)
                s_rows_[off].push_back({nz_idx_.data() + row.begin, nz_val_.data() + row.begin, int(len)});
                sc_rows_[off].push_back(ref.out);
                channels_multiplied += nz;
            } else {
                a_rows_[off].push_back(row.x);
                c_rows_[off].push_back(ref.out);
                channels_multiplied += uint64_t(cin_);
            }
        }
    }
    // One gathered product per kernel offset (two: full rows and channel-skipping rows); with
    // workers, the threads take the weight panels (kPanel output channels, every offset) one at a
    // time from a shared counter: no two threads write the same value, no locks, and a thread on
    // a slower core takes fewer panels (on the development VM one vCPU often ran the products at
    // two thirds of the other's speed; with fixed halves the update waited for it).
    auto products = [&](int j0, int j1) {
        for (size_t off = 0; off < kk; ++off) {
            const float* w = w_.data() + off * size_t(cin_) * size_t(cout_);
            if (!a_rows_[off].empty())
                gemm_rows(a_rows_[off].size(), a_rows_[off].data(), c_rows_[off].data(), w, cin_, cout_, j0, j1);
            if (!s_rows_[off].empty())
                sparse_rows(s_rows_[off].size(), s_rows_[off].data(), sc_rows_[off].data(), w, cin_, cout_, j0, j1);
        }
    };
    const uint64_t macs = channels_multiplied * uint64_t(cout_);
    if (workers && workers->size() > 1 && macs >= kParallelMacs && cout_ > kPanel) {
        const int panels = (cout_ + kPanel - 1) / kPanel;
        std::atomic<int> next{0};
        workers->run([&](int, int) {
            for (int p = next.fetch_add(1, std::memory_order_relaxed); p < panels;
                 p = next.fetch_add(1, std::memory_order_relaxed))
                products(p * kPanel, std::min(cout_, (p + 1) * kPanel));
        });
    } else
        products(0, cout_);
    counts.rules = delta_rules + new_rules;
    const uint64_t differences = delta_rules ? n * uint64_t(cin_) : 0;
    counts.flops = 2 * macs + differences;
    counts.full_flops = 2 * counts.rules * uint64_t(cin_) * uint64_t(cout_) + differences;
    // Activation; report the outputs that changed.
    for (int32_t o : touched_.list) {
        const Status st = Status(status_[size_t(o)]);
        if (st == None) continue;
        float* z = out_.row(o);
        const bool was = out_.active[size_t(o)];
        std::copy(z, z + cout_, old_.begin());
        bool changed = st != Persist;
        if (st == Removed) {
            std::fill(z, z + cout_, 0.0f);
            out_.active[size_t(o)] = 0;
        } else {
            const float* pre = pre_.data() + size_t(o) * size_t(cout_);
            if (relu_)
                for (int c = 0; c < cout_; ++c) z[c] = pre[c] > 0.0f ? pre[c] : 0.0f;
            else
                std::copy(pre, pre + cout_, z);
            // Compared bit by bit (vectorised): a value that only changed sign as a zero (possible
            // without a ReLU) counts as changed, which costs an all-zero difference downstream
            // (left out of the products when skipping channels), never a missed change.
            changed = changed || std::memcmp(z, old_.data(), sizeof(float) * size_t(cout_)) != 0;
            out_.active[size_t(o)] = 1;
            if (relu_) {
                counts.flops += uint64_t(cout_);
                counts.full_flops += uint64_t(cout_);
            }
        }
        if (changed) out_changes.add(o, old_.data(), was);
    }
    counts.changed_out = out_changes.size();
}

void ConvLayer::cone(const std::vector<int32_t>& in_cone) {
    cone_.clear();
    for (int32_t site : in_cone) for_outputs(site, [&](int, int32_t o) { cone_.insert(o); });
    counts.cone_out = cone_.list.size();
    const uint64_t per_site = (2 * uint64_t(k_) * uint64_t(k_) * uint64_t(cin_) - 1) * uint64_t(cout_) +
                              (relu_ ? uint64_t(cout_) : 0);
    counts.dense_flops = counts.cone_out * per_site;
}

// --------------------------------------------------------------------------------------------
// Max pooling

MaxPoolLayer::MaxPoolLayer(int in_h, int in_w, int channels, int size, int stride)
    : in_w_(in_w), c_(channels), k_(size), s_(stride) {
    require(size > 0 && stride > 0, "max pooling size and stride must be positive");
    require(in_h >= size && in_w >= size, "max pooling window larger than its input");
    const int oh = (in_h - size) / stride + 1, ow = (in_w - size) / stride + 1;
    out_.allocate(oh, ow, channels);
    touched_.resize(oh * ow);
    cone_.resize(oh * ow);
    scratch_.resize(size_t(channels));
}

void MaxPoolLayer::reset() {
    std::fill(out_.values.begin(), out_.values.end(), 0.0f);
    std::fill(out_.active.begin(), out_.active.end(), 0);
}

template <typename F>
void MaxPoolLayer::for_outputs(int32_t in_site, F f) const {
    const int cy = in_site / in_w_, cx = in_site % in_w_;
    // outputs o with o * s <= c <= o * s + k - 1
    const int y0 = cy - k_ + 1 <= 0 ? 0 : (cy - k_ + 1 + s_ - 1) / s_, y1 = std::min(cy / s_, out_.height - 1);
    const int x0 = cx - k_ + 1 <= 0 ? 0 : (cx - k_ + 1 + s_ - 1) / s_, x1 = std::min(cx / s_, out_.width - 1);
    for (int oy = y0; oy <= y1; ++oy)
        for (int ox = x0; ox <= x1; ++ox) f(oy * out_.width + ox);
}

void MaxPoolLayer::update(const Map& in, const Changes& changes, Changes& out_changes) {
    counts = Counts{};
    counts.changed_in = changes.size();
    out_changes.clear(c_);
    touched_.clear();
    for (int32_t site : changes.sites) for_outputs(site, [&](int32_t o) { touched_.insert(o); });
    const int ow = out_.width;
    float* m = scratch_.data();
    for (int32_t o : touched_.list) {
        const int oy = o / ow, ox = o % ow;
        bool any = false;
        std::fill(m, m + c_, -std::numeric_limits<float>::infinity());
        for (int dy = 0; dy < k_; ++dy)
            for (int dx = 0; dx < k_; ++dx) {
                const int32_t i = (oy * s_ + dy) * in_w_ + ox * s_ + dx;
                if (!in.active[size_t(i)]) continue;
                any = true;
                const float* x = in.row(i);
                for (int c = 0; c < c_; ++c) m[c] = std::max(m[c], x[c]);
            }
        if (!any) std::fill(m, m + c_, 0.0f);
        float* z = out_.row(o);
        const bool was = out_.active[size_t(o)];
        if (was != any || std::memcmp(m, z, sizeof(float) * size_t(c_)) != 0) {
            out_changes.add(o, z, was);
            std::copy(m, m + c_, z);
            out_.active[size_t(o)] = any;
        }
    }
    counts.rules = touched_.list.size() * uint64_t(k_) * uint64_t(k_);
    counts.flops = counts.full_flops = counts.rules * uint64_t(c_);
    counts.changed_out = out_changes.size();
}

void MaxPoolLayer::cone(const std::vector<int32_t>& in_cone) {
    cone_.clear();
    for (int32_t site : in_cone) for_outputs(site, [&](int32_t o) { cone_.insert(o); });
    counts.cone_out = cone_.list.size();
    counts.dense_flops = counts.cone_out * uint64_t(k_) * uint64_t(k_) * uint64_t(c_);
}

// --------------------------------------------------------------------------------------------
// Fully connected

LinearLayer::LinearLayer(int in_h, int in_w, int channels, int outputs, std::vector<float> weights,
                         std::vector<float> bias, uint64_t dense_flops)
    : sites_(in_h * in_w), c_(channels), n_(outputs), dense_flops_(dense_flops), b_(std::move(bias)) {
    require(outputs > 0, "a linear layer needs outputs");
    require(weights.size() == size_t(sites_) * size_t(c_) * size_t(n_),
            "linear weights must have sites*channels*outputs values");
    require(b_.size() == size_t(n_), "linear bias must have one value per output");
    w_ = pack_panels(weights, sites_, c_, n_);
    out_.allocate(1, 1, outputs);
    cone_.resize(1);
    old_.resize(size_t(n_));
    reset();
}

void LinearLayer::reset() {
    std::copy(b_.begin(), b_.end(), out_.values.begin());
    out_.active[0] = 1;
}

void LinearLayer::update(const Map& in, const Changes& changes, Changes& out_changes) {
    counts = Counts{};
    counts.changed_in = changes.size();
    out_changes.clear(n_);
    if (changes.size() == 0) return;
    float* y = out_.row(0);
    std::copy(y, y + n_, old_.begin());
    delta_.resize(size_t(c_));
    const float* a = delta_.data();
    for (size_t i = 0; i < changes.size(); ++i) {
        const int32_t site = changes.sites[i];
        const float* now = in.row(site);
        const float* old = changes.old_values.data() + i * size_t(c_);
        for (int c = 0; c < c_; ++c) delta_[size_t(c)] = now[c] - old[c];
        gemm_rows(1, &a, &y, w_.data() + size_t(site) * size_t(c_) * size_t(n_), c_, n_, 0, n_);
    }
    counts.rules = changes.size();
    counts.flops = counts.full_flops = counts.rules * (2 * uint64_t(c_) * uint64_t(n_) + uint64_t(c_));
    out_changes.add(0, old_.data(), true);
    counts.changed_out = 1;
}

void LinearLayer::cone(const std::vector<int32_t>& in_cone) {
    cone_.clear();
    if (!in_cone.empty()) cone_.insert(0);
    counts.cone_out = cone_.list.size();
    counts.dense_flops = counts.cone_out ? dense_flops_ : 0;
}

// --------------------------------------------------------------------------------------------
// Engine

Engine::Engine(int height, int width, int channels) {
    require(height > 0 && width > 0 && channels > 0, "engine input size and channels must be positive");
    input_.allocate(height, width, channels);
    input_sites_.resize(height * width);
}

void Engine::push_layer(std::unique_ptr<Layer> layer) {
    layer->workers = workers_.get();
    layer->channel_skip = channel_skip_;
    layers_.push_back(std::move(layer));
    reset();
}

void Engine::add_conv(int cin, int cout, int ksize, int stride, int padding, ConvMode mode, bool relu,
                      std::vector<float> weights, std::vector<float> bias) {
    const Map& last = last_map();
    require(cin == last.channels, "convolution: expected " + std::to_string(last.channels) +
                                      " input channels (the previous layer's), got " + std::to_string(cin));
    push_layer(std::make_unique<ConvLayer>(last.height, last.width, cin, cout, ksize, stride, padding, mode, relu,
                                           std::move(weights), std::move(bias)));
}

void Engine::add_maxpool(int size, int stride) {
    const Map& last = last_map();
    push_layer(std::make_unique<MaxPoolLayer>(last.height, last.width, last.channels, size, stride));
}

void Engine::add_linear(int outputs, std::vector<float> weights, std::vector<float> bias, uint64_t dense_flops) {
    const Map& last = last_map();
    push_layer(std::make_unique<LinearLayer>(last.height, last.width, last.channels, outputs, std::move(weights),
                                             std::move(bias), dense_flops));
}

void Engine::set_threads(int threads) {
    require(threads >= 1 && threads <= 256, "threads must be between 1 and 256");
    workers_.reset();
    if (threads > 1) workers_ = std::make_unique<Workers>(threads);
    for (auto& layer : layers_) layer->workers = workers_.get();
}

void Engine::set_channel_skip(float share) {
    require(share >= 0.0f && share <= 1.0f, "the channel-skipping share must be between 0 and 1");
    channel_skip_ = share;
    for (auto& layer : layers_) layer->channel_skip = channel_skip_;
}

// Every active site of `map`, as changed from an empty map.
static void all_active(const Map& map, Changes& out) {
    out.clear(map.channels);
    for (int s = 0; s < map.sites(); ++s)
        if (map.active[size_t(s)]) {
            out.sites.push_back(s);
            out.was_active.push_back(0);
        }
    out.old_values.assign(out.size() * size_t(map.channels), 0.0f);
}

void Engine::reset() {
    std::fill(input_.values.begin(), input_.values.end(), 0.0f);
    std::fill(input_.active.begin(), input_.active.end(), 0);
    // Each layer's reset state is that of an all-zero input; a layer after a dense one (whose
    // empty-input output is not zero) is then brought up to date with its actual input.
    const Map* in = &input_;
    for (auto& layer : layers_) {
        layer->reset();
        all_active(*in, changes_a_);
        if (changes_a_.size()) layer->update(*in, changes_a_, changes_b_);
        in = &layer->output();
    }
}

void Engine::update(const int32_t* ys, const int32_t* xs, const float* values, size_t n) {
    const int h = input_.height, w = input_.width, c = input_.channels;
    for (size_t i = 0; i < n; ++i)
        if (ys[i] < 0 || ys[i] >= h || xs[i] < 0 || xs[i] >= w)
            throw std::invalid_argument("site " + std::to_string(i) + " (y=" + std::to_string(ys[i]) +
                                        ", x=" + std::to_string(xs[i]) + ") is outside the " + std::to_string(h) +
                                        "x" + std::to_string(w) + " input");
    // Record each site's state before its first write; a site given twice keeps its last value.
    Changes& ch = changes_a_;
    ch.clear(c);
    input_sites_.clear();
    for (size_t i = 0; i < n; ++i) {
        const int32_t site = ys[i] * w + xs[i];
        float* row = input_.row(site);
        if (input_sites_.insert(site)) ch.add(site, row, input_.active[size_t(site)]);
        const float* v = values + i * size_t(c);
        bool any = false;
        for (int k = 0; k < c; ++k) {
            row[k] = v[k];
            any |= v[k] != 0.0f;
        }
        input_.active[size_t(site)] = any;
    }
    // Drop the sites left as they were.
    size_t kept = 0;
    for (size_t i = 0; i < ch.size(); ++i) {
        const int32_t site = ch.sites[i];
        const float* old = ch.old_values.data() + i * size_t(c);
        if (bool(ch.was_active[i]) == bool(input_.active[size_t(site)]) &&
            std::memcmp(old, input_.row(site), sizeof(float) * size_t(c)) == 0)
            continue;
        if (kept != i) {
            ch.sites[kept] = site;
            ch.was_active[kept] = ch.was_active[i];
            std::memmove(ch.old_values.data() + kept * size_t(c), old, sizeof(float) * size_t(c));
        }
        ++kept;
    }
    ch.sites.resize(kept);
    ch.was_active.resize(kept);
    ch.old_values.resize(kept * size_t(c));
    propagate(ch);
}

void Engine::batch(const float* dense) {
    reset();
    const int c = input_.channels, sites = input_.sites();
    std::copy(dense, dense + size_t(sites) * size_t(c), input_.values.begin());
    for (int s = 0; s < sites; ++s) {
        const float* row = input_.row(s);
        input_.active[size_t(s)] = std::any_of(row, row + c, [](float v) { return v != 0.0f; });
    }
    all_active(input_, changes_a_);
    propagate(changes_a_);
}

void Engine::propagate(Changes& in_changes) {
    Changes* cur = &in_changes;
    Changes* next = cur == &changes_a_ ? &changes_b_ : &changes_a_;
    const Map* in = &input_;
    input_cone_ = in_changes.sites;
    const std::vector<int32_t>* cone = &input_cone_;
    for (auto& layer : layers_) {
        const auto start = std::chrono::steady_clock::now();
        layer->update(*in, *cur, *next);
        layer->counts.nanoseconds = uint64_t(
            std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count());
        layer->cone(*cone);
        cone = &layer->cone_sites();
        in = &layer->output();
        std::swap(cur, next);
    }
}

}  // namespace evs::async
