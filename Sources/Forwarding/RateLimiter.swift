import NetAddress

/// Per-client token buckets in a fixed table (no allocation, no locks: one per worker).
/// Clients hash into 16,384 slots; a colliding newcomer takes over the slot, which can
/// only make limiting more lenient, never block a client that is under its rate.
final class RateLimiter {
    struct Bucket {
        var key: UInt64 = 0
        var tokens: UInt32 = 0
        var lastMs: UInt64 = 0
        var over: UInt32 = 0
    }

    enum Verdict { case pass, slip, drop }

    let rate: UInt32
    let slip: UInt32
    let exempt: AccessList
    private let table: UnsafeMutablePointer<Bucket>
    private let mask = 16_383

    init(_ policy: RateLimitPolicy) {
        rate = policy.queriesPerSecond
        slip = max(policy.slip, 0)
        exempt = AccessList(policy.exempt)
        table = .allocate(capacity: mask + 1)
        table.initialize(repeating: Bucket(), count: mask + 1)
    }

    deinit {
        table.deinitialize(count: mask + 1)
        table.deallocate()
    }

    /// IPv4 address, or the /64 of an IPv6 address (one host's privacy addresses share it).
    static func key(_ a: IPAddress) -> UInt64 {
        a.family == .v4 ? UInt64(a.v4Value) | 1 << 63 : a.high
    }

    func check(_ source: IPAddress, nowMs: UInt64) -> Verdict {
        guard rate > 0 else { return .pass }
        if exempt.allows(source) { return .pass }
        let k = RateLimiter.key(source)
        var h = k &* 0x9E37_79B9_7F4A_7C15
        h ^= h >> 29
        let i = Int(truncatingIfNeeded: h) & mask
        if table[i].key != k {
            table[i] = Bucket(key: k, tokens: rate, lastMs: nowMs, over: 0)
        }
        // Refill: `rate` tokens per second, at most one second's worth in the bucket.
        let elapsed = nowMs &- table[i].lastMs
        if elapsed > 0 {
            let add = UInt64(rate) * elapsed / 1000
            if add > 0 {
                table[i].tokens = UInt32(min(UInt64(rate), UInt64(table[i].tokens) + add))
                table[i].lastMs = nowMs
            }
        }
        if table[i].tokens > 0 {
            table[i].tokens -= 1
            return .pass
        }
        table[i].over &+= 1
        return slip > 0 && table[i].over % slip == 0 ? .slip : .drop
    }
}
