// Asynchronous sparse convolutional network (asynet, ECCV 2020), exact under additions AND
// deletions: each layer keeps its own state and, given the sites of its input that changed (with
// their previous values), updates only the outputs those sites reach.
//
// Maps are dense and site-major: value (y * width + x) * channels + c, plus an activity flag per
// site; inactive sites hold zeros. Storage is allocated once per engine; an update touches only the
// changed sites (no feature-map copies).
//
// Layers:
//   ConvLayer  k x k convolution, stride, padding, in three activity modes:
//                submanifold  output active where the input is active (stride 1, same size)
//                sparse       output active where its window holds an active input
//                dense        every output active (a plain convolution over the zero-filled map)
//              plus bias (batch norm folded in) and optional ReLU. Outputs that stay active are
//              updated by out += W_k (x_new - x_old) over the changed inputs, one gathered matrix
//              product per kernel offset; outputs that become active are computed from scratch;
//              outputs that become inactive are zeroed.
//   MaxPool    sparse max pooling ('valid' windows): the outputs whose window holds a changed
//              input are recomputed (a maximum cannot be updated by differences).
//   Linear     fully connected over the whole map (torch's flatten order, or global average
//              pooling folded into the weights), updated by differences.
//
// Every layer counts, per update, the FLOPs of the asynchronous sparse computation it did and of
// the asynchronous dense computation (the dense network recomputed over the cone of influence of
// the changed input sites).
#pragma once

#include <cstddef>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace evs::async {

struct Map {
    int height = 0, width = 0, channels = 0;
    std::vector<float> values;    // sites x channels
    std::vector<uint8_t> active;  // sites

    void allocate(int h, int w, int c);
    int sites() const { return height * width; }
    float* row(int32_t site) { return values.data() + size_t(site) * size_t(channels); }
    const float* row(int32_t site) const { return values.data() + size_t(site) * size_t(channels); }
};

// The sites of a map that changed in one update, with their state before it.
struct Changes {
    int channels = 0;
    std::vector<int32_t> sites;
    std::vector<float> old_values;  // sites.size() x channels
    std::vector<uint8_t> was_active;

    void clear(int c) {
        channels = c;
        sites.clear();
        old_values.clear();
        was_active.clear();
    }
    void add(int32_t site, const float* old, bool was) {
        sites.push_back(site);
        old_values.insert(old_values.end(), old, old + channels);
        was_active.push_back(was ? 1 : 0);
    }
    size_t size() const { return sites.size(); }
};

// Cache-line (64-byte) aligned storage: a 32-float row of a weight panel then spans exactly two
// cache lines when each kernel offset's block (cin * cout floats) is a multiple of 16 floats, as in
// the VGGs (with std::allocator's 16-byte alignment most loads of a row straddle a line, which
// slowed the channel-skipping products by about 1.5x).
template <typename T>
struct CacheAligned {
    using value_type = T;
    static constexpr std::align_val_t kAlign{64};
    CacheAligned() = default;
    template <typename U>
    CacheAligned(const CacheAligned<U>&) {}
    T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
    void deallocate(T* p, size_t) { ::operator delete(p, kAlign); }
    template <typename U>
    bool operator==(const CacheAligned<U>&) const { return true; }
    template <typename U>
    bool operator!=(const CacheAligned<U>&) const { return false; }
};
using AlignedFloats = std::vector<float, CacheAligned<float>>;

// Operation counts of one layer in the last update.
struct Counts {
    uint64_t flops = 0;        // asynchronous sparse: what the engine computed
    uint64_t full_flops = 0;   // the same with every channel of every rule multiplied (the paper's count)
    uint64_t dense_flops = 0;  // asynchronous dense: the dense layer over the cone of influence
    uint64_t rules = 0;        // (input site, output site, kernel offset) rules of the update
    uint64_t changed_in = 0;   // changed input sites
    uint64_t changed_out = 0;  // output sites whose value or activity changed
    uint64_t cone_out = 0;     // output sites in the cone of influence
    uint64_t nanoseconds = 0;  // wall-clock time of the update
};

// Marks sites touched in one update without clearing an array per update.
class SiteSet {
   public:
    void resize(int n) { stamp_.assign(size_t(n), 0); }
    // True the first time `site` is inserted since the last clear().
    bool insert(int32_t site) {
        if (stamp_[size_t(site)] == epoch_) return false;
        stamp_[size_t(site)] = epoch_;
        list.push_back(site);
        return true;
    }
    bool contains(int32_t site) const { return stamp_[size_t(site)] == epoch_; }
    void clear();
    std::vector<int32_t> list;

   private:
    std::vector<uint32_t> stamp_;
    uint32_t epoch_ = 1;
};

// A few threads that run one task together: the caller is thread 0. Idle workers spin for a few
// microseconds (the layers of an update follow each other closely), then sleep.
class Workers {
   public:
    explicit Workers(int threads);
    ~Workers();
    Workers(const Workers&) = delete;
    Workers& operator=(const Workers&) = delete;
    int size() const { return int(threads_.size()) + 1; }
    // Runs task(t, size()) for every t in [0, size()) and returns when all are done.
    void run(const std::function<void(int, int)>& task);

   private:
    static constexpr int kSpinMicroseconds = 100;
    static void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    void loop(int id);
    std::vector<std::thread> threads_;
    std::atomic<uint64_t> generation_{0};
    std::atomic<int> pending_{0};
    const std::function<void(int, int)>* task_ = nullptr;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stop_ = false;
};

// A row of a product given by its non-zero channels: their indices in idx (ascending) and values
// in val, followed by padding (channel 0, value 0) up to n, a positive multiple of kSparsePad.
constexpr int kSparsePad = 4;
// The length of a list of n channels with its padding.
constexpr uint32_t padded_length(uint32_t n) { return (n + kSparsePad - 1) / kSparsePad * kSparsePad; }
struct SparseRow {
    const int32_t* idx;
    const float* val;
    int n;
};

// The default share of non-zero channels up to which a product row skips its zero channels. The
// same on every CPU, so that an update's FLOP count does not depend on the machine. Measured
// (speed of sparse_rows against gemm_rows, random rows of 64-512 channels): skipping is faster
// below about 0.5 with AVX-512 (0.8x at 0.6), below about 0.7 with AVX2 and about 0.9 with the
// portable kernel. On the N-Caltech101 VGG (1-event updates, AVX-512) 0.6 does 37% fewer
// multiply-adds than 0 at the same update time.
constexpr float kChannelSkip = 0.6f;

// Convolutions with fewer multiply-adds than this in an update run on one thread.
constexpr uint64_t kParallelMacs = 1u << 17;

class Layer {
   public:
    virtual ~Layer() = default;
    virtual std::string kind() const = 0;
    virtual void reset() = 0;
    // `in` is the input map after the update; `changes` lists its changed sites.
    virtual void update(const Map& in, const Changes& changes, Changes& out_changes) = 0;
    // The cone of influence: the output sites that the input sites `in_cone` reach in a dense
    // network (kept in cone_sites()).
    virtual void cone(const std::vector<int32_t>& in_cone) = 0;
    const std::vector<int32_t>& cone_sites() const { return cone_.list; }
    const Map& output() const { return out_; }
    Counts counts;
    Workers* workers = nullptr;  // set by the engine; null = one thread
    // Rows of a product whose share of non-zero channels is at most this (and whose padded channel
    // list is shorter than the row) skip their zero channels (see sparse_rows), and all-zero rows
    // are left out; 0: every row multiplied in full. Set by the engine.
    float channel_skip = kChannelSkip;

   protected:
    Map out_;
    SiteSet cone_;
};

enum class ConvMode { Submanifold, Sparse, Dense };

class ConvLayer : public Layer {
   public:
    // weights: ksize * ksize * cin * cout (offset (dy, dx) major, then input, then output channel);
    // kept packed in panels (pack_panels).
    ConvLayer(int in_h, int in_w, int cin, int cout, int ksize, int stride, int padding, ConvMode mode,
              bool relu, std::vector<float> weights, std::vector<float> bias);
    std::string kind() const override;
    void reset() override;
    void update(const Map& in, const Changes& changes, Changes& out_changes) override;
    void cone(const std::vector<int32_t>& in_cone) override;

   private:
    enum Status : uint8_t { None, Persist, New, Removed };
    struct Pair {
        int32_t change, offset, out;
    };
    // A row of a product: source row `row` (see rows_) into output `out`.
    struct RowRef {
        int32_t row;
        float* out;
    };
    template <typename F>
    void for_outputs(int32_t in_site, F f) const;

    int in_h_, in_w_, cin_, cout_, k_, s_, p_;
    ConvMode mode_;
    bool relu_;
    AlignedFloats w_;
    std::vector<float> b_;
    // Pre-activation, out sites x cout. Cache-line aligned: with threads, each writes whole
    // panels of every row (rows start on a line when cout is a multiple of 16, as in the VGGs); a
    // row that straddled a line boundary shared a line between two threads' panels (false
    // sharing: a 64-channel layer's products took 37 instead of 28 us with two threads).
    AlignedFloats pre_;
    std::vector<int32_t> in_count_;  // sparse mode: active inputs in each output's window
    // scratch, kept between updates
    SiteSet touched_;
    std::vector<uint8_t> status_;
    std::vector<Pair> pairs_;
    std::vector<float> delta_;
    // The product's source rows (differences of changed inputs, inputs of new outputs): the row's
    // values, and when `listed` (channel skipping on) its `nz` non-zero channels at
    // nz_idx_[begin ...] with values nz_val_[...], padded to a multiple of kSparsePad (a
    // SparseRow); not listed, nz = cin.
    struct Row {
        const float* x;
        size_t begin;
        uint32_t nz;
    };
    int32_t add_row(const float* x, bool listed);
    std::vector<Row> rows_;
    std::vector<int32_t> nz_idx_;  // sized to the largest update so far; nz_used_ in use
    std::vector<float> nz_val_;
    size_t nz_used_ = 0;
    SiteSet in_rows_;                   // inputs of new outputs given a row in this update
    std::vector<int32_t> in_row_;       // their row
    std::vector<std::vector<RowRef>> refs_;  // per kernel offset
    // per kernel offset: the rows multiplied in full, and those that skip their zero channels
    std::vector<std::vector<const float*>> a_rows_;
    std::vector<std::vector<float*>> c_rows_;
    std::vector<std::vector<SparseRow>> s_rows_;
    std::vector<std::vector<float*>> sc_rows_;
    std::vector<float> old_;
};

class MaxPoolLayer : public Layer {
   public:
    MaxPoolLayer(int in_h, int in_w, int channels, int size, int stride);
    std::string kind() const override { return "maxpool"; }
    void reset() override;
    void update(const Map& in, const Changes& changes, Changes& out_changes) override;
    void cone(const std::vector<int32_t>& in_cone) override;

   private:
    template <typename F>
    void for_outputs(int32_t in_site, F f) const;
    int in_w_, c_, k_, s_;
    SiteSet touched_;
    std::vector<float> scratch_;
};

class LinearLayer : public Layer {
   public:
    // weights: sites * channels * outputs (per input site, a channels x outputs matrix).
    // dense_flops: the cost of the dense layer it stands for (e.g. global pooling + FC).
    LinearLayer(int in_h, int in_w, int channels, int outputs, std::vector<float> weights, std::vector<float> bias,
                uint64_t dense_flops);
    std::string kind() const override { return "linear"; }
    void reset() override;
    void update(const Map& in, const Changes& changes, Changes& out_changes) override;
    void cone(const std::vector<int32_t>& in_cone) override;

   private:
    int sites_, c_, n_;
    uint64_t dense_flops_;
    AlignedFloats w_;
    std::vector<float> b_, delta_, old_;
};

class Engine {
   public:
    Engine(int height, int width, int channels);
    void add_conv(int cin, int cout, int ksize, int stride, int padding, ConvMode mode, bool relu,
                  std::vector<float> weights, std::vector<float> bias);
    void add_maxpool(int size, int stride);
    void add_linear(int outputs, std::vector<float> weights, std::vector<float> bias, uint64_t dense_flops);

    // Sets input sites (ys[i], xs[i]) to values[i * channels ...]; an all-zero value deactivates
    // the site. A site given twice takes its last value. Throws std::invalid_argument on
    // coordinates outside the map.
    void update(const int32_t* ys, const int32_t* xs, const float* values, size_t n);
    // Computes from scratch for a dense input (height x width x channels).
    void batch(const float* dense);
    void reset();
    // Threads used by the convolutions (1 = the calling thread only).
    void set_threads(int threads);
    int threads() const { return workers_ ? workers_->size() : 1; }
    // Product rows whose share of non-zero channels is at most `share` (0..1) skip their zero
    // channels and all-zero rows are left out (0: every row multiplied in full, as the paper counts).
    void set_channel_skip(float share);
    float channel_skip() const { return channel_skip_; }

    size_t num_layers() const { return layers_.size(); }
    const Map& input() const { return input_; }
    const Map& output(size_t layer) const { return layers_.at(layer)->output(); }
    const Layer& layer(size_t i) const { return *layers_.at(i); }
    const Map& last_map() const { return layers_.empty() ? input_ : layers_.back()->output(); }
    std::mutex mutex;  // the Python binding serialises calls with it

   private:
    void propagate(Changes& in_changes);
    void push_layer(std::unique_ptr<Layer> layer);
    Map input_;
    std::vector<std::unique_ptr<Layer>> layers_;
    std::unique_ptr<Workers> workers_;
    float channel_skip_ = kChannelSkip;
    Changes changes_a_, changes_b_;
    SiteSet input_sites_;
    std::vector<int32_t> input_cone_;
};

// Output columns per weight panel: a cin x cout weight matrix is stored as ceil(cout / kPanel)
// panels, panel p holding columns [p * kPanel, ...) row by row (cin x width, contiguous).
constexpr int kPanel = 32;
// `blocks` consecutive row-major cin x cout matrices, packed into panels.
AlignedFloats pack_panels(const std::vector<float>& w, int blocks, int cin, int cout);

// Columns [j0, j1) of out_rows[r][.] += in_rows[r][0:cin] . w (cin x cout, packed), for r < m.
void gemm_rows(size_t m, const float* const* in_rows, float* const* out_rows, const float* w, int cin, int cout, int j0,
               int j1);
// Columns [j0, j1) of out_rows[r][.] += (the row rows[r]) . w, for r < m, summing only the
// channels the rows list (the others are zero). The same sums as gemm_rows up to rounding (the
// channels are summed in another order), with the multiply-adds of the zero channels left out.
void sparse_rows(size_t m, const SparseRow* rows, float* const* out_rows, const float* w, int cin, int cout, int j0,
                 int j1);
// Lists the non-zero channels of x[0, cin) (NaN counts as non-zero, -0 as zero): their indices,
// ascending, into idx and their values into val, each with room for cin entries (entries past
// the returned count may be overwritten); returns how many. The rows of sparse_rows are built so.
uint32_t nonzero_channels(const float* x, int cin, int32_t* idx, float* val);
// The instruction set gemm_rows uses: "avx512", "avx2" or "portable" (the best this CPU runs,
// unless set_gemm_kernel chose another).
const char* gemm_kernel();
// The kernels this CPU runs, best first.
std::vector<std::string> gemm_kernels();
// Makes every engine use kernel `name` (one of gemm_kernels(); for tests and benchmarks of the
// other code paths). Throws std::invalid_argument for an unknown or unsupported one. Not to be
// called while an update runs.
void set_gemm_kernel(const std::string& name);

}  // namespace evs::async
