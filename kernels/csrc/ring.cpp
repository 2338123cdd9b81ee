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

void Ring::write(uint64_t index, const Event* ev, size_t n) {
    const size_t at = size_t(index % cap_);
    const size_t first = n < cap_ - at ? n : cap_ - at;
    std::memcpy(slots_ + at, ev, first * sizeof(Event));
    if (n > first) std::memcpy(slots_, ev + first, (n - first) * sizeof(Event));
}

void Ring::read(uint64_t index, Event* out, size_t n) const {
    const size_t at = size_t(index % cap_);
    const size_t first = n < cap_ - at ? n : cap_ - at;
    std::memcpy(out, slots_ + at, first * sizeof(Event));
    if (n > first) std::memcpy(out + first, slots_, (n - first) * sizeof(Event));
}

size_t Ring::push(const Event* ev, size_t n, double timeout_s, const std::atomic<bool>* cancel) {
    h_->offered.fetch_add(n, std::memory_order_relaxed);
    const RingPolicy policy = RingPolicy(h_->policy);
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
