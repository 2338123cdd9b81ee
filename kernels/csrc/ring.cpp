#include "ring.hpp"

#include <chrono>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>

namespace evs {
namespace {

using Clock = std::chrono::steady_clock;

// Spin briefly, then yield, then sleep: low latency when the other side is quick, no burnt
// core when it is not.
class Backoff {
public:
    void wait() {
        if (n_ < 64) {
            ++n_;
        } else if (n_ < 256) {
            ++n_;
            std::this_thread::yield();
        } else {
            std::this_thread::sleep_for(std::chrono::microseconds(50));
        }
    }

private:
    int n_ = 0;
};

bool expired(Clock::time_point deadline, double timeout_s) {
    return timeout_s >= 0 && Clock::now() >= deadline;
}

Clock::time_point deadline_for(double timeout_s) {
    if (timeout_s < 0) return Clock::time_point::max();
    return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
}

// Slot contents as 8-byte words, for the relaxed atomic copies of drop_oldest (see Ring::write).
// may_alias: the words are the bytes of Event objects. Slots are 8-byte aligned: the memory is
// 64-byte aligned, the header a multiple of 64 bytes, an Event 16 bytes.
typedef uint64_t __attribute__((may_alias)) SlotWord;
constexpr size_t kWordsPerEvent = sizeof(Event) / sizeof(SlotWord);
static_assert(sizeof(Event) % sizeof(SlotWord) == 0, "events are copied as whole 8-byte words");
static_assert(sizeof(RingHeader) % 8 == 0, "slots must be 8-byte aligned for the atomic word copies");
static_assert(__atomic_always_lock_free(sizeof(SlotWord), 0), "8-byte atomics must be lock-free");

// The compiler cannot widen atomic accesses, and 8-byte copies keep fewer cache lines in flight
// than memcpy: copying a cache line per step and prefetching both sides this far ahead recovers
// memcpy's throughput (measured: drop_oldest push/pop of 64k-event batches).
constexpr uintptr_t kPrefetchBytes = 2048;

// Prefetches the line kPrefetchBytes after p. The address is computed as an integer, since it
// may be past the end of the buffer; a prefetch never faults.
inline void prefetch_ahead(const void* p, bool write) {
    const void* ahead = reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(p) + kPrefetchBytes);
    if (write)
        __builtin_prefetch(ahead, 1);
    else
        __builtin_prefetch(ahead, 0);
}

// Copies `words` 8-byte words from s to d, a cache line (eight loads, then eight stores) per
// step; `load` and `store` say which side is the ring's slots (relaxed atomics) and which the
// caller's buffer (plain, any alignment).
template <typename Load, typename Store>
inline void copy_words(unsigned char* d, const unsigned char* s, size_t words, Load load, Store store) {
    size_t i = 0;
    for (; i + 8 <= words; i += 8) {
        prefetch_ahead(s + 8 * i, false);
        prefetch_ahead(d + 8 * i, true);
        uint64_t v[8];
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) v[j] = load(s + 8 * (i + j));
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) store(d + 8 * (i + j), v[j]);
    }
    for (; i < words; ++i) store(d + 8 * i, load(s + 8 * i));
}

inline uint64_t plain_load(const unsigned char* p) {
    uint64_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline void plain_store(unsigned char* p, uint64_t v) { std::memcpy(p, &v, sizeof v); }

inline uint64_t slot_load(const unsigned char* p) {
    return __atomic_load_n(reinterpret_cast<const SlotWord*>(p), __ATOMIC_RELAXED);
}

inline void slot_store(unsigned char* p, uint64_t v) {
    __atomic_store_n(reinterpret_cast<SlotWord*>(p), v, __ATOMIC_RELAXED);
}

// n events into slots as relaxed atomic 8-byte stores.
void store_words(Event* slots, const Event* src, size_t n) {
    copy_words(reinterpret_cast<unsigned char*>(slots), reinterpret_cast<const unsigned char*>(src),
               n * kWordsPerEvent, plain_load, slot_store);
}

// n events out of slots as relaxed atomic 8-byte loads.
void load_words(Event* dst, const Event* slots, size_t n) {
    copy_words(reinterpret_cast<unsigned char*>(dst), reinterpret_cast<const unsigned char*>(slots),
               n * kWordsPerEvent, slot_load, plain_store);
}

}  // namespace

Ring Ring::create(void* memory, size_t bytes, size_t capacity, RingPolicy policy) {
    if (capacity == 0) throw std::invalid_argument("capacity must be positive");
    if (bytes < bytes_for(capacity)) throw std::invalid_argument("memory block too small for the ring");
    if (reinterpret_cast<uintptr_t>(memory) % 64) throw std::invalid_argument("memory must be 64-byte aligned");
    auto* h = new (memory) RingHeader();
    h->magic = kMagic;
    h->version = kVersion;
    h->capacity = capacity;
    h->policy = uint32_t(policy);
    h->closed = 0;
    return Ring(h, reinterpret_cast<Event*>(static_cast<uint8_t*>(memory) + sizeof(RingHeader)), capacity);
}

Ring Ring::attach(void* memory, size_t bytes) {
    if (bytes < sizeof(RingHeader)) throw std::invalid_argument("memory block too small for a ring header");
    if (reinterpret_cast<uintptr_t>(memory) % 64) throw std::invalid_argument("memory must be 64-byte aligned");
    auto* h = static_cast<RingHeader*>(memory);
    if (h->magic != kMagic) throw std::invalid_argument("not an evstream ring (bad magic)");
    if (h->version != kVersion) throw std::invalid_argument("ring version " + std::to_string(h->version) + " is not supported");
    if (h->capacity == 0 || bytes < bytes_for(h->capacity)) throw std::invalid_argument("ring capacity exceeds the memory block");
    if (h->policy > 2) throw std::invalid_argument("unknown ring policy");
    return Ring(h, reinterpret_cast<Event*>(static_cast<uint8_t*>(memory) + sizeof(RingHeader)), h->capacity);
}

// Slot copies. With block and drop_newest the producer writes only slots the consumer is done
// with (indices below the read index it loaded with acquire, which the consumer advanced with
// release after its copy) and the consumer reads only slots the producer published (indices below
// the write index, stored with release after the copy): no slot is read and written concurrently,
// and memcpy is enough.
//
// With drop_oldest the producer may advance the read index over events the consumer is copying
// and overwrite their slots while it copies; the consumer then discards the copy (its CAS on the
// read index fails). That overlap would be a data race (undefined behaviour) with memcpy, so both
// sides copy those rings' slots as 8-byte relaxed atomic loads and stores. The read index's CAS
// (acq_rel) orders what matters: the read index only grows, so a consumer whose CAS succeeds
// precedes the producer's next CAS in its modification order; the producer's CAS reads that value
// (or a later one of the same release sequence: every change to the read index is a CAS), so it
// synchronizes with the consumer's, and the consumer's loads happen before the producer's later
// stores to those slots: a copy that is kept never holds overwritten events. (Slots the producer
// overwrites without a CAS are below a read index it loaded with acquire, as with block.) A
// discarded copy may hold a mix of old and new words, harmlessly.
void Ring::write(uint64_t index, const Event* ev, size_t n) {
    const size_t at = size_t(index % cap_);
    const size_t first = n < cap_ - at ? n : cap_ - at;
    if (h_->policy == uint32_t(RingPolicy::drop_oldest)) {
        store_words(slots_ + at, ev, first);
        if (n > first) store_words(slots_, ev + first, n - first);
        return;
    }
    std::memcpy(slots_ + at, ev, first * sizeof(Event));
    if (n > first) std::memcpy(slots_, ev + first, (n - first) * sizeof(Event));
}

void Ring::read(uint64_t index, Event* out, size_t n) const {
    const size_t at = size_t(index % cap_);
    const size_t first = n < cap_ - at ? n : cap_ - at;
    if (h_->policy == uint32_t(RingPolicy::drop_oldest)) {
        load_words(out, slots_ + at, first);
        if (n > first) load_words(out + first, slots_, n - first);
        return;
    }
    std::memcpy(out, slots_ + at, first * sizeof(Event));
    if (n > first) std::memcpy(out + first, slots_, (n - first) * sizeof(Event));
}

// `offered` counts the events a push answers for. The drop policies answer for all n (stored, or
// counted in `dropped`), counted up front. `block` answers only for what it stores, counted before
// each part is published: a push that times out or is cancelled leaves the rest with the caller,
// who may offer it again (runtime/pipeline.py does) without counting it twice.
size_t Ring::push(const Event* ev, size_t n, double timeout_s, const std::atomic<bool>* cancel) {
    const RingPolicy policy = RingPolicy(h_->policy);
    if (policy != RingPolicy::block) h_->offered.fetch_add(n, std::memory_order_relaxed);
    const uint64_t head = h_->head.load(std::memory_order_relaxed);  // only this thread writes it
    if (policy == RingPolicy::drop_oldest) {
        if (n > cap_) {  // only the newest `capacity` events can be kept
            h_->dropped.fetch_add(n - cap_, std::memory_order_relaxed);
            ev += n - cap_;
            n = cap_;
        }
        uint64_t tail = h_->tail.load(std::memory_order_acquire);
        while (head + n - tail > cap_) {
            const uint64_t want = head + n - cap_;
            if (h_->tail.compare_exchange_weak(tail, want, std::memory_order_acq_rel)) {
                h_->dropped.fetch_add(want - tail, std::memory_order_relaxed);
                break;
            }
        }
        write(head, ev, n);
        h_->head.store(head + n, std::memory_order_release);
        return n;
    }
    size_t done = 0;
    const auto deadline = deadline_for(timeout_s);
    Backoff backoff;
    while (done < n) {
        const uint64_t tail = h_->tail.load(std::memory_order_acquire);
        const size_t room = cap_ - size_t(head + done - tail);
        const size_t k = room < n - done ? room : n - done;
        if (k) {
            write(head + done, ev + done, k);
            done += k;
            if (policy == RingPolicy::block) h_->offered.fetch_add(k, std::memory_order_relaxed);
            h_->head.store(head + done, std::memory_order_release);
            continue;
        }
        if (policy == RingPolicy::drop_newest) break;
        if (expired(deadline, timeout_s) || (cancel && cancel->load())) break;
        backoff.wait();
    }
    if (policy == RingPolicy::drop_newest && done < n) h_->dropped.fetch_add(n - done, std::memory_order_relaxed);
    return done;
}

size_t Ring::pop(Event* out, size_t max, double timeout_s, const std::atomic<bool>* cancel,
                 uint64_t* first_index) {
    if (max == 0) return 0;
    const auto deadline = deadline_for(timeout_s);
    Backoff backoff;
    while (true) {
        uint64_t tail = h_->tail.load(std::memory_order_acquire);
        const uint64_t head = h_->head.load(std::memory_order_acquire);
        if (head != tail) {
            const size_t k = size_t(head - tail) < max ? size_t(head - tail) : max;
            read(tail, out, k);
            // Commit; with drop_oldest the producer may have moved the read index (and be
            // overwriting what we copied): then discard the copy and start again.
            if (h_->tail.compare_exchange_strong(tail, tail + k, std::memory_order_acq_rel)) {
                h_->popped.fetch_add(k, std::memory_order_relaxed);
                if (first_index) *first_index = tail;
                return k;
            }
            continue;
        }
        if (closed()) {
            // close() follows the producer's last push, so its events are visible now.
            if (h_->head.load(std::memory_order_acquire) != tail) continue;
            return 0;
        }
        if (timeout_s == 0 || expired(deadline, timeout_s) || (cancel && cancel->load())) return 0;
        backoff.wait();
    }
}

}  // namespace evs
