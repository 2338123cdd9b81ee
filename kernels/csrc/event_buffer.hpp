// Growable, uninitialised event storage whose memory can be handed to numpy without a copy.
#pragma once

#include <algorithm>
#include <cstring>
#include <memory>

#include "event.hpp"

namespace evs {

class EventBuffer {
public:
    EventBuffer() = default;
    explicit EventBuffer(size_t capacity) { grow_to(capacity); }

    size_t size() const { return size_; }
    Event* data() { return data_.get(); }

    // Guarantees room for `k` more events; returns the write position.
    Event* reserve_more(size_t k) {
        if (size_ + k > capacity_) grow_to(std::max(capacity_ * 2, size_ + k + 1024));
        return data_.get() + size_;
    }
    void commit(size_t k) { size_ += k; }
    void set_size(size_t n) { size_ = n; }

    // Gives up ownership of the storage (to a numpy capsule); the buffer becomes empty.
    Event* release() {
        capacity_ = 0;
        size_ = 0;
        return data_.release();
    }

private:
    void grow_to(size_t capacity) {
        // new Event[] default-initialises a trivial type: no zeroing cost.
        std::unique_ptr<Event[]> bigger(new Event[capacity]);
        if (size_) std::memcpy(bigger.get(), data_.get(), size_ * sizeof(Event));
        data_ = std::move(bigger);
        capacity_ = capacity;
    }

    std::unique_ptr<Event[]> data_;
    size_t size_ = 0;
    size_t capacity_ = 0;
};

}  // namespace evs
