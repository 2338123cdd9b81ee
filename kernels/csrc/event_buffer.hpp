// Growable, uninitialised event storage whose memory can be handed to numpy without a copy.
//
// Plain malloc/realloc: growing a large buffer is a page remap, not a copy, and a capacity
// reserved but never written costs no physical memory. (Transparent huge pages were tried:
// with the common defrag=madvise setting, faults then stall on compaction; 4 KiB pages are
// faster and far steadier.)
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

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
    void reserve_total(size_t n) {
        if (n > capacity_) grow_to(n);
    }
    void commit(size_t k) { size_ += k; }

    // Gives up ownership of the storage (free() it); the buffer becomes empty.
    Event* release() {
        if (size_ && size_ < capacity_) grow_to(size_);  // return the unused tail
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

    Event* data_ = nullptr;
    size_t size_ = 0;
    size_t capacity_ = 0;
};

}  // namespace evs
