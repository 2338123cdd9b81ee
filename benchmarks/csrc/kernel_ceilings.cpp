// The ceilings of the asynchronous engine's products on this machine: how fast its two product
// kernels run when nothing else does, against the core's multiply-add peak measured in the same
// run. An update of the engine cannot run its products faster than these.
//
//   peak         a loop of register-only multiply-adds (12 independent chains), AVX-512 or AVX2
//   full rows    gemm_rows: rows multiplied in full, register blocks sharing each weight they load
//   skipping     sparse_rows: rows listing their non-zero channels (half of them here), one weight
//                row loaded per channel and row
//
// on a 256 x 256 layer, 24 rows, with one kernel offset's weights (256 KB, within L2) and with
// nine (2.3 MB, a 3x3 layer's, beyond a 2 MB L2). FLOPs are the multiply-adds done (the skipped
// channels not counted), x2. Trials of the kinds interleave, so that a shared machine's drift
// touches all alike; medians of the trials, and each median's ratio to the peak's.
//
//   g++ -O3 -std=c++17 -pthread -Ikernels/csrc benchmarks/csrc/kernel_ceilings.cpp kernels/csrc/async_engine.cpp -o /tmp/kernel_ceilings
//   /tmp/kernel_ceilings [--threads N] [--trials N] [--kernel avx512|avx2|portable]
//
// With --threads N, N threads run the same trials at once (each its own data), one table each:
// how the cores behave when the engine's threads share the machine.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "async_engine.hpp"

using namespace evs::async;

namespace {

constexpr int kRows = 24, kChannels = 256, kChains = 12;

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) float peak_avx512(long iters) {
    __m512 acc[kChains];
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(float(j));
    const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-6f);
    for (long i = 0; i < iters; ++i)
#pragma GCC unroll 16
        for (int j = 0; j < kChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], x, y);
    __m512 s = acc[0];
    for (int j = 1; j < kChains; ++j) s = _mm512_add_ps(s, acc[j]);
    float v[16];
    _mm512_storeu_ps(v, s);
    float sum = 0.0f;
    for (float x : v) sum += x;
    return sum;
}
__attribute__((target("avx2,fma"))) float peak_avx2(long iters) {
    __m256 acc[kChains];
    for (int j = 0; j < kChains; ++j) acc[j] = _mm256_set1_ps(float(j));
    const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-6f);
    for (long i = 0; i < iters; ++i)
#pragma GCC unroll 16
        for (int j = 0; j < kChains; ++j) acc[j] = _mm256_fmadd_ps(acc[j], x, y);
    __m256 s = acc[0];
    for (int j = 1; j < kChains; ++j) s = _mm256_add_ps(s, acc[j]);
    float v[8];
    _mm256_storeu_ps(v, s);
    float sum = 0.0f;
    for (float x : v) sum += x;
    return sum;
}
#endif

// The peak loop for the engine's kernel: lanes per multiply-add, or 0 when there is none (the
// portable kernel).
int peak_lanes() {
    const std::string k = gemm_kernel();
    return k == "avx512" ? 16 : k == "avx2" ? 8 : 0;
}

// One product setting: weights for `offsets` kernel offsets, kRows rows of half non-zero channels.
struct Setting {
    int offsets;
    AlignedFloats w;
    std::vector<float> in;
    std::vector<const float*> in_rows;
    std::vector<int32_t> idx;
    std::vector<float> val;
    std::vector<SparseRow> sparse;
    uint64_t listed = 0;  // non-zero channels over all rows
    AlignedFloats out;
    std::vector<float*> out_rows;

    Setting(int offsets_, unsigned seed) : offsets(offsets_) {
        std::mt19937 g(seed);
        std::uniform_real_distribution<float> u(-1.0f, 1.0f);
        std::vector<float> weights(size_t(offsets) * kChannels * kChannels);
        for (float& x : weights) x = u(g);
        w = pack_panels(weights, offsets, kChannels, kChannels);
        in.assign(size_t(kRows) * kChannels, 0.0f);
        for (float& x : in)
            if (u(g) > 0.0f) x = u(g);
        idx.resize(size_t(kRows) * (kChannels + kSparsePad));
        val.resize(idx.size());
        out = AlignedFloats(size_t(kRows) * kChannels);
        std::vector<size_t> begin;
        size_t used = 0;
        for (int r = 0; r < kRows; ++r) {
            const float* x = in.data() + size_t(r) * kChannels;
            in_rows.push_back(x);
            out_rows.push_back(out.data() + size_t(r) * kChannels);
            const uint32_t n = nonzero_channels(x, kChannels, idx.data() + used, val.data() + used);
            const uint32_t padded = padded_length(n);
            for (uint32_t t = n; t < padded; ++t) {
                idx[used + t] = 0;
                val[used + t] = 0.0f;
            }
            begin.push_back(used);
            sparse.push_back({nullptr, nullptr, int(padded)});
            listed += n;
            used += padded;
        }
        for (int r = 0; r < kRows; ++r) {  // (pointers taken once the lists are complete)
            sparse[size_t(r)].idx = idx.data() + begin[size_t(r)];
            sparse[size_t(r)].val = val.data() + begin[size_t(r)];
        }
    }
    const float* weights(int k) const { return w.data() + size_t(k) * kChannels * kChannels; }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// GFLOP/s of one trial of `kind` (about `budget` FLOPs).
double trial(int kind, Setting* const* settings, double budget, float* sink) {
    if (kind == 0) {
        const int lanes = peak_lanes();
        if (!lanes) return 0.0;
        const long iters = long(budget / (2.0 * kChains * lanes));
        const auto t0 = std::chrono::steady_clock::now();
#if defined(__x86_64__) && defined(__GNUC__)
        *sink += lanes == 16 ? peak_avx512(iters) : peak_avx2(iters);
#endif
        return 2.0 * kChains * lanes * double(iters) / seconds_since(t0) / 1e9;
    }
    const bool full = kind == 1 || kind == 3;
    const Setting& s = *settings[kind <= 2 ? 0 : 1];
    const double per_pass = 2.0 * kChannels * s.offsets * (full ? double(kRows) * kChannels : double(s.listed));
    const long passes = std::max(1L, long(budget / per_pass));
    const auto t0 = std::chrono::steady_clock::now();
    for (long p = 0; p < passes; ++p)
        for (int k = 0; k < s.offsets; ++k)
            if (full)
                gemm_rows(kRows, s.in_rows.data(), s.out_rows.data(), s.weights(k), kChannels, kChannels, 0, kChannels);
            else
                sparse_rows(kRows, s.sparse.data(), s.out_rows.data(), s.weights(k), kChannels, kChannels, 0, kChannels);
    const double rate = per_pass * double(passes) / seconds_since(t0) / 1e9;
    *sink += s.out[0];
    return rate;
}

constexpr int kKinds = 5;
const char* const kNames[kKinds] = {
    "multiply-add peak (registers only)",
    "full rows, weights in L2 (256 KB)",
    "skipping rows (50% non-zero), in L2",
    "full rows, weights beyond L2 (2.3 MB)",
    "skipping rows (50% non-zero), beyond L2",
};

void run(int thread, int trials, std::vector<std::vector<double>>* rates) {
    Setting in_l2(1, 1u + unsigned(thread)), beyond(9, 101u + unsigned(thread));
    Setting* settings[2] = {&in_l2, &beyond};
    float sink = 0.0f;
    for (int kind = 0; kind < kKinds; ++kind) trial(kind, settings, 2e8, &sink);  // warm-up
    rates->assign(kKinds, {});
    for (int t = 0; t < trials; ++t)
        for (int kind = 0; kind < kKinds; ++kind) (*rates)[size_t(kind)].push_back(trial(kind, settings, 1e9, &sink));
    if (sink == 12345.0f) std::printf(" ");  // keeps the results alive
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int usage(const char* what, int code = 2) {
    std::fprintf(code ? stderr : stdout,
                 "kernel_ceilings: %s\nusage: kernel_ceilings [--threads N (1-64)] [--trials N (1-1000)] "
                 "[--kernel NAME (default: the best this CPU runs)]\n",
                 what);
    return code;
}

}  // namespace

int main(int argc, char** argv) {
    int threads = 1, trials = 15;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const bool takes_value = a == "--threads" || a == "--trials" || a == "--kernel";
        if (takes_value && i + 1 >= argc) return usage(("missing value for " + a).c_str());
        if (a == "--threads" || a == "--trials") {
            char* end = nullptr;
            const long v = std::strtol(argv[++i], &end, 10);
            const long hi = a == "--threads" ? 64 : 1000;
            if (*end || v < 1 || v > hi) return usage(("bad value for " + a + ": " + argv[i]).c_str());
            (a == "--threads" ? threads : trials) = int(v);
        } else if (a == "--kernel") {
            try {
                set_gemm_kernel(argv[++i]);
            } catch (const std::invalid_argument& e) {
                return usage(e.what());
            }
        } else if (a == "-h" || a == "--help") {
            return usage("the ceilings of the asynchronous engine's product kernels (see the source's header)", 0);
        } else {
            return usage(("unknown argument " + a).c_str());
        }
    }
    std::vector<std::vector<std::vector<double>>> rates(static_cast<size_t>(threads));
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(run, t, trials, &rates[size_t(t)]);
    run(0, trials, &rates[0]);
    for (auto& th : pool) th.join();
    std::printf("engine kernel %s; %dx%d layer, %d rows; medians of %d trial%s; %d thread%s at once\n", gemm_kernel(),
                kChannels, kChannels, kRows, trials, trials == 1 ? "" : "s", threads, threads == 1 ? "" : "s");
    for (int t = 0; t < threads; ++t) {
        if (threads > 1) std::printf("thread %d\n", t);
        const double peak = median(rates[size_t(t)][0]);
        for (int kind = 0; kind < kKinds; ++kind) {
            const double m = median(rates[size_t(t)][size_t(kind)]);
            if (kind == 0 && peak == 0.0) {
                std::printf("  %-42s  (no AVX2/AVX-512 loop for the portable kernel)\n", kNames[kind]);
                continue;
            }
            if (peak > 0.0)
                std::printf("  %-42s %7.1f GFLOP/s  %.2f of peak\n", kNames[kind], m, m / peak);
            else
                std::printf("  %-42s %7.1f GFLOP/s\n", kNames[kind], m);
        }
    }
    return 0;
}
