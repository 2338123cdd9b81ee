// Single-producer / single-consumer event ring over a fixed block of memory (owned, or a
// shared-memory segment another process maps), lock-free. Plain C++: no Python in here.
//
// Indices are monotonically increasing 64-bit counts (pushed and popped so far); the slot of
// index i is i % capacity. Policies when the ring is full:
//   block        the producer waits for room (file replay: nothing is lost);
//   drop_newest  events that do not fit are discarded (and counted);
//   drop_oldest  the oldest unread events are discarded (and counted) to make room.
// For drop_oldest the producer advances the read index itself, *before* overwriting; the
// consumer copies first and then commits with a compare-and-swap, retrying if the producer
// moved the read index meanwhile, so it never returns overwritten events. The slots of a
// drop_oldest ring are copied as 8-byte relaxed atomics on both sides, since the producer may
// overwrite what the consumer is copying (and then discards); see ring.cpp. A program on the
// other side of a shared-memory drop_oldest ring must copy its slots the same way.
// Invariant, exact at every quiescent point, for every policy:
//   offered == popped + dropped + size().
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "event.hpp"

namespace evs {

enum class RingPolicy : uint32_t { block = 0, drop_newest = 1, drop_oldest = 2 };

struct alignas(64) RingHeader {
    uint64_t magic;
    uint64_t version;
    uint64_t capacity;  // events
    uint32_t policy;
    std::atomic<uint32_t> closed;  // set by the producer at end of stream
    alignas(64) std::atomic<uint64_t> head;     // events written (producer)
    alignas(64) std::atomic<uint64_t> tail;     // events consumed or discarded from the front
    // Events push() answered for: with drop_newest and drop_oldest every event handed to it
    // (stored, or counted in `dropped`); with block only the events it stored: a push that times
    // out or is cancelled leaves the rest with the caller, who may offer them again.
    alignas(64) std::atomic<uint64_t> offered;
    std::atomic<uint64_t> dropped;              // events discarded by the policy
    std::atomic<uint64_t> popped;               // events returned by pop()
};

static_assert(std::atomic<uint64_t>::is_always_lock_free, "shared-memory rings need lock-free atomics");

class Ring {
public:
    static constexpr uint64_t kMagic = 0x676e697253564545ull;  // "EEVSRing"
    static constexpr uint64_t kVersion = 1;

    // Bytes a ring of `capacity` events needs (header + slots).
    static size_t bytes_for(size_t capacity) { return sizeof(RingHeader) + capacity * sizeof(Event); }

    // Initialises a ring in `memory` (at least bytes_for(capacity) bytes, 64-byte aligned).
    static Ring create(void* memory, size_t bytes, size_t capacity, RingPolicy policy);
    // Attaches to a ring another Ring::create initialised; validates the header.
    static Ring attach(void* memory, size_t bytes);

    // Pushes up to n events; returns how many were stored. With `block`, waits for room until
    // `timeout_s` (< 0: forever) or until `cancel` becomes true, and counts as offered only what
    // it stored; the others never wait and count all n as offered.
    size_t push(const Event* ev, size_t n, double timeout_s, const std::atomic<bool>* cancel = nullptr);
    // Pops up to `max` events into `out`; waits up to `timeout_s` for at least one event
    // (0: no wait). Returns how many were popped (0 on timeout, or when closed and empty).
    // `first_index`, if given, receives the stream index (count of events stored before) of the
    // first popped event, so a consumer can match events with the producer's records.
    size_t pop(Event* out, size_t max, double timeout_s, const std::atomic<bool>* cancel = nullptr,
               uint64_t* first_index = nullptr);
    uint64_t stored() const { return h_->head.load(std::memory_order_acquire); }

    void close() { h_->closed.store(1, std::memory_order_release); }
    bool closed() const { return h_->closed.load(std::memory_order_acquire) != 0; }
    size_t capacity() const { return cap_; }
    size_t size() const { return size_t(h_->head.load(std::memory_order_acquire) - h_->tail.load(std::memory_order_acquire)); }
    RingPolicy policy() const { return RingPolicy(h_->policy); }
    uint64_t offered() const { return h_->offered.load(); }
    uint64_t dropped() const { return h_->dropped.load(); }
    uint64_t popped() const { return h_->popped.load(); }

private:
    Ring(RingHeader* h, Event* slots, size_t cap) : h_(h), slots_(slots), cap_(cap) {}
    void write(uint64_t index, const Event* ev, size_t n);
    void read(uint64_t index, Event* out, size_t n) const;

    RingHeader* h_;
    Event* slots_;
    size_t cap_;
};

}  // namespace evs
