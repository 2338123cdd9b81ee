// Growable, uninitialised event storage whose memory can be handed to numpy without a copy.
//
// Plain malloc/realloc: growing a large buffer is a page remap, not a copy, and a capacity
// reserved but never written costs no physical memory. Like numpy, buffers of 4 MiB and more
// ask for transparent huge pages: first touch of a fresh output then faults once per 2 MiB
// instead of once per 4 KiB, which is most of the cost of decoding into new memory.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "event.hpp"

namespace evs {

class EventBuffer {
public:
    EventBuffer() = default;
    EventBuffer(const EventBuffer&) = delete;
    EventBuffer& operator=(const EventBuffer&) = delete;
    ~EventBuffer() { std::free(data_); }

    size_t size() const { return size_; }
    Event* data() { return data_; }

    // Guarantees room for `k` more events; returns the write position.
    Event* reserve_more(size_t k) {
        if (size_ + k > capacity_) grow_to(std::max(capacity_ + capacity_ / 2, size_ + k + 1024));
        return data_ + size_;
    }
    // Guarantees a total capacity of `n` events (a hint: writing beyond it still grows).
    // An explicitly sized buffer asks for huge pages (see above); buffers grown step by step do
    // not, since re-advising every step costs more than it saves.
    void reserve_total(size_t n) {
        if (n > capacity_) {
            grow_to(n);
            advise_huge();
        }
    }
    void commit(size_t k) { size_ += k; }

    // Gives up ownership of the storage (free() it); the buffer becomes empty.
    Event* release() {
        // An unused tail is given back only when it is large: shrinking with realloc defeats
        // the allocator's reuse of the block and costs more than the untouched pages it frees.
        if (capacity_ > 2 * size_ + (size_t(1) << 20)) grow_to(size_ ? size_ : 1);
        Event* p = data_;
        data_ = nullptr;
        capacity_ = size_ = 0;
        return p;
    }

private:
    void grow_to(size_t capacity) {
        void* p = std::realloc(data_, capacity * sizeof(Event));
        if (!p) throw std::bad_alloc();
        data_ = static_cast<Event*>(p);
        capacity_ = capacity;
    }

    void advise_huge() {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
        void* p = data_;
        constexpr uintptr_t kHuge = uintptr_t(1) << 21;
        const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
        const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + capacity_ * sizeof(Event)) & ~(kHuge - 1);
        if (capacity_ * sizeof(Event) >= 2 * kHuge && end > begin) {
            madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
        }
#endif
    }

    Event* data_ = nullptr;
    size_t size_ = 0;
    size_t capacity_ = 0;
};

}  // namespace evs
