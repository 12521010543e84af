import DNSWire

/// What makes two questions share a cached answer: the case-folded name, type, class and
/// the DO and CD bits (a DNSSEC-aware client must not get an answer stripped for a
/// non-DNSSEC one, nor a CD answer that skipped validation). `name` points into the
/// query being served; the key is only valid while that buffer is.
public struct CacheKey {
    public let name: UnsafeRawPointer
    public let nameLength: Int
    public let qtype: UInt16
    public let qclass: UInt16
    public let flags: UInt8
    public let hash: UInt64

    public static let dnssecOK: UInt8 = 1
    public static let checkingDisabled: UInt8 = 2

    @inlinable
    public init(name: UnsafeRawPointer, nameLength: Int, qtype: UInt16, qclass: UInt16, flags: UInt8) {
        self.name = name
        self.nameLength = nameLength
        self.qtype = qtype
        self.qclass = qclass
        self.flags = flags
        self.hash = CacheKey.hash(name: name, length: nameLength,
                                  tail: UInt64(qtype) << 24 | UInt64(qclass) << 8 | UInt64(flags))
    }

    /// A key with a chosen hash, so tests can force two names into one index slot and
    /// check that a hit is verified against the stored question, not trusted on the hash.
    init(name: UnsafeRawPointer, nameLength: Int, qtype: UInt16, qclass: UInt16, flags: UInt8, hash: UInt64) {
        self.name = name
        self.nameLength = nameLength
        self.qtype = qtype
        self.qclass = qclass
        self.flags = flags
        self.hash = hash
    }

    /// A word-at-a-time multiply-xorshift hash over the case-folded name. Seeded per
    /// process so that nobody can pre-compute colliding names for a shard. Never reads
    /// past `length` bytes.
    @inlinable
    public static func hash(name p: UnsafeRawPointer, length: Int, tail: UInt64) -> UInt64 {
        var h: UInt64 = HashSeed.value ^ (UInt64(length) &* 0x9E37_79B9_7F4A_7C15)
        var i = 0
        while i + 8 <= length {
            h = (h ^ DNSName.foldWord(p.loadUnaligned(fromByteOffset: i, as: UInt64.self))) &* 0xBF58_476D_1CE4_E5B9
            h ^= h >> 29
            i += 8
        }
        // The last 0-7 bytes in at most three loads.
        let last = DNSName.tail(p, from: i, length: length)
        h = (h ^ DNSName.foldWord(last)) &* 0xBF58_476D_1CE4_E5B9
        return mix(h ^ tail)
    }

    @inlinable @inline(__always)
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &* 0xBF58_476D_1CE4_E5B9
        z ^= z >> 31
        z = z &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 29)
    }
}

/// Per-process hash seed, set once at start-up before any worker runs.
public enum HashSeed {
    @usableFromInline nonisolated(unsafe) static var value: UInt64 = 0x2545_F491_4F6C_DD1D
    public static func set(_ v: UInt64) { value = v }
}
