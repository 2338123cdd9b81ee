// Exercises the asynchronous engine without Python, for sanitizer builds (tests/test_sanitizers.py):
// random additions, changes and deletions (duplicate sites included) through every layer kind and
// the worker pool; after each update the engine must equal a second engine computing from scratch.
// Exit code 0 on success; any sanitizer report aborts the process.
#include <cmath>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "async_engine.hpp"

using evs::async::ConvMode;
using evs::async::Engine;

static std::vector<float> randoms(std::mt19937& g, size_t n) {
    std::normal_distribution<float> d(0.0f, 0.3f);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g);
    return v;
}

static void build(Engine& e, int threads, unsigned seed) {
    std::mt19937 g(seed);
    e.set_threads(threads);
    e.add_conv(2, 8, 3, 1, 1, ConvMode::Submanifold, true, randoms(g, 9 * 2 * 8), randoms(g, 8));
    e.add_conv(8, 40, 3, 1, 1, ConvMode::Submanifold, true, randoms(g, 9 * 8 * 40), randoms(g, 40));
    e.add_maxpool(3, 2);
    e.add_conv(40, 36, 3, 2, 1, ConvMode::Sparse, false, randoms(g, 9 * 40 * 36), randoms(g, 36));
    e.add_maxpool(2, 2);
    e.add_conv(36, 12, 3, 2, 0, ConvMode::Dense, true, randoms(g, 9 * 36 * 12), randoms(g, 12));
    const auto& last = e.last_map();
    e.add_linear(5, randoms(g, size_t(last.sites()) * 12 * 5), randoms(g, 5), 1);
}

// 300 random updates (duplicate sites included) of async_engine, each checked against
// batch_engine recomputing from scratch; returns false on an activity mismatch.
static bool run_updates(Engine& async_engine, Engine& batch_engine, int h, int w, int c, double& worst) {
    std::mt19937 g(1);
    std::vector<float> dense(size_t(h) * w * c, 0.0f);
    for (int step = 0; step < 300; ++step) {
        const int n = int(g() % 12);
        std::vector<int32_t> ys(static_cast<size_t>(n)), xs(static_cast<size_t>(n));
        std::vector<float> values(size_t(n) * c);
        for (int i = 0; i < n; ++i) {
            ys[size_t(i)] = int32_t(g() % h);
            xs[size_t(i)] = int32_t(g() % w);
            if (i > 0 && g() % 5 == 0) {  // a duplicate site: the last value wins
                ys[size_t(i)] = ys[size_t(i - 1)];
                xs[size_t(i)] = xs[size_t(i - 1)];
            }
            for (int k = 0; k < c; ++k) values[size_t(i) * c + k] = step % 4 == 3 ? 0.0f : float(g() % 3);
            for (int k = 0; k < c; ++k)
                dense[(size_t(ys[size_t(i)]) * w + xs[size_t(i)]) * c + k] = values[size_t(i) * c + k];
        }
        async_engine.update(ys.data(), xs.data(), values.data(), size_t(n));
        batch_engine.batch(dense.data());
        for (size_t l = 0; l < async_engine.num_layers(); ++l) {
            const auto& a = async_engine.output(l);
            const auto& b = batch_engine.output(l);
            if (a.active != b.active) {
                std::fprintf(stderr, "step %d layer %zu: activity differs\n", step, l);
                return false;
            }
            for (size_t i = 0; i < a.values.size(); ++i) worst = std::max(worst, double(std::fabs(a.values[i] - b.values[i])));
        }
    }
    return true;
}

// nonzero_channels of the current kernel against a plain loop: rows of 1-70 channels with zeros,
// negative zeros and NaNs.
static bool check_nonzero_channels(const std::string& kernel) {
    std::mt19937 g(3);
    for (int cin = 1; cin <= 70; ++cin)
        for (int trial = 0; trial < 20; ++trial) {
            std::vector<float> x(static_cast<size_t>(cin));
            for (auto& v : x) {
                const unsigned r = g() % 8;
                v = r < 3 ? 0.0f : r == 3 ? -0.0f : r == 4 ? std::nanf("") : float(int(g() % 7) - 3) + 0.5f;
            }
            std::vector<int32_t> idx(size_t(cin), -1), want_idx;
            std::vector<float> val(size_t(cin), 0.0f);
            for (int k = 0; k < cin; ++k)
                if (x[size_t(k)] != 0.0f) want_idx.push_back(k);
            const uint32_t n = evs::async::nonzero_channels(x.data(), cin, idx.data(), val.data());
            bool ok = n == want_idx.size();
            for (uint32_t t = 0; ok && t < n; ++t) {
                const float want = x[size_t(want_idx[t])];
                ok = idx[t] == want_idx[t] && (std::isnan(want) ? std::isnan(val[t]) : val[t] == want);
            }
            if (!ok) {
                std::fprintf(stderr, "%s: nonzero_channels wrong for a %d-channel row\n", kernel.c_str(), cin);
                return false;
            }
        }
    return true;
}

int main() {
    const int h = 29, w = 37, c = 2;
    Engine async_engine(h, w, c), batch_engine(h, w, c);
    build(async_engine, 3, 7);
    build(batch_engine, 1, 7);
    double worst = 0;
    // every product kernel this CPU runs (AVX-512, AVX2, portable), with rows multiplied in full,
    // by their non-zero channels only, and the default mix
    for (const std::string& kernel : evs::async::gemm_kernels())
        for (float share : {0.0f, evs::async::kChannelSkip, 1.0f}) {
            evs::async::set_gemm_kernel(kernel);
            if (share == 0.0f && !check_nonzero_channels(kernel)) return 1;
            async_engine.set_channel_skip(share);
            async_engine.reset();
            batch_engine.reset();
            if (!run_updates(async_engine, batch_engine, h, w, c, worst)) return 1;
        }
    if (worst > 1e-3) {
        std::fprintf(stderr, "async and batch differ by %g\n", worst);
        return 1;
    }
    int32_t bad_y = h, bad_x = 0;
    float v[2] = {1, 1};
    try {
        async_engine.update(&bad_y, &bad_x, v, 1);
        std::fprintf(stderr, "a site outside the input was accepted\n");
        return 1;
    } catch (const std::invalid_argument&) {
    }
    try {
        async_engine.add_conv(3, 4, 3, 1, 1, ConvMode::Submanifold, true, std::vector<float>(10), std::vector<float>(4));
        std::fprintf(stderr, "a convolution with wrong channels was accepted\n");
        return 1;
    } catch (const std::invalid_argument&) {
    }
    std::printf("ok: non-zero channel lists and 300 updates per product kernel and channel skipping (%zu "
                "kernels), largest async-batch difference %g\n",
                evs::async::gemm_kernels().size(), worst);
    return 0;
}
