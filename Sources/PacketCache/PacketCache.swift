import DNSWire
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Outcome of a cache lookup.
public enum CacheStatus: UInt8, Sendable {
    case miss, fresh, stale
}

public struct CacheHit {
    public var status: CacheStatus = .miss
    /// Bytes copied into the caller's buffer (the answer in canonical form: no OPT, ID 0).
    public var length: Int = 0
    public var questionEnd: Int = 0
    /// Seconds the answer has spent in the cache: subtract it from every TTL.
    public var age: UInt32 = 0
    /// How many TTL offsets (UInt16, host order) follow the answer in the caller's buffer,
    /// or -1 when the answer must be walked to find them.
    public var ttlCount: Int = -1
    /// Set once per entry when it is asked for in the last tenth of its lifetime, or when
    /// it is being served stale: the caller should refresh it from upstream.
    public var wantsRefresh: Bool = false

    public init() {}
}

/// Whole DNS answers in wire form, bounded by bytes of memory rather than by entry count.
///
/// Each shard is a ring-shaped log: new answers are appended at the head; space is
/// reclaimed at the tail. An entry that was read since it was written gets a second
/// chance (CLOCK): instead of being dropped at the tail it moves to the head with its bit
/// cleared. A flood of names asked once therefore passes through the ring without pushing
/// out names that are asked for repeatedly (measured in PacketCacheTests.testScanResistance
/// and bench/). A log needs no allocator and no per-entry pointers, which keeps an
/// A answer near 120 bytes including its index slot.
///
/// Shards are locked with `trylock` only: a worker that finds its shard busy treats the
/// lookup as a miss and skips the insert instead of waiting, so no event loop ever blocks.
public final class PacketCache: @unchecked Sendable {
    public let capacityBytes: Int
    let shards: [CacheShard]
    /// The same shards, unretained, so the query path does no reference counting.
    @usableFromInline let shardRefs: UnsafeMutablePointer<Unmanaged<CacheShard>>
    @usableFromInline let shardMask: UInt64

    /// `capacityBytes` covers the answers, their headers and the hash index.
    public init(capacityBytes: Int, shardCount requested: Int = 32) {
        var n = 1
        while n < requested { n <<= 1 }
        let perShard = max(capacityBytes / n, 16 * 1024)
        self.capacityBytes = perShard * n
        self.shards = (0..<n).map { _ in CacheShard(budget: perShard) }
        self.shardMask = UInt64(n - 1)
        shardRefs = .allocate(capacity: n)
        for (i, sh) in shards.enumerated() { shardRefs[i] = Unmanaged.passUnretained(sh) }
    }

    deinit { shardRefs.deallocate() }

    /// Copies a matching answer into `out` (`capacity` bytes). Fresh answers are returned
    /// as `.fresh`; expired ones within their stale window only when `allowStale` is set.
    public func lookup(_ key: CacheKey, now: UInt32, allowStale: Bool,
                       into out: UnsafeMutableRawPointer, capacity: Int) -> CacheHit {
        shardRefs[Int(key.hash & shardMask)]._withUnsafeGuaranteedRef { s in
            guard s.tryLock() else { s.contended.add(1, ordering: .relaxed); return CacheHit() }
            defer { s.unlock() }
            return s.lookup(key, now: now, allowStale: allowStale, into: out, capacity: capacity)
        }
    }

    /// Stores an answer (canonical form: no OPT record) for `ttl` seconds, then keeps it
    /// for `staleWindow` more seconds for serve-stale. Replaces any entry with the same key.
    @discardableResult
    public func insert(_ key: CacheKey, message: UnsafeRawPointer, length: Int, questionEnd: Int,
                       ttl: UInt32, staleWindow: UInt32, now: UInt32) -> Bool {
        shardRefs[Int(key.hash & shardMask)]._withUnsafeGuaranteedRef { s in
            guard s.tryLock() else { s.contended.add(1, ordering: .relaxed); return false }
            defer { s.unlock() }
            return s.insert(key, message: message, length: length, questionEnd: questionEnd,
                            ttl: ttl, staleWindow: staleWindow, now: now)
        }
    }

    /// After answering from a stale entry, keeps serving it for `ttl` seconds before the
    /// next attempt upstream (RFC 8767 "failure recheck"), so a dead upstream costs each
    /// client one timeout per `ttl`, not one per query.
    public func extendStale(_ key: CacheKey, now: UInt32, ttl: UInt32) {
        shardRefs[Int(key.hash & shardMask)]._withUnsafeGuaranteedRef { s in
            guard s.tryLock() else { return }
            defer { s.unlock() }
            s.extendStale(key, now: now, ttl: ttl)
        }
    }

    public struct Statistics: Sendable {
        public var entries = 0
        public var bytes = 0
        public var evictions = 0
        public var reinsertions = 0
        public var contended = 0
    }

    /// Sums the shards' counters. Reads them without locks: each is a machine word written
    /// by one thread at a time (the lock holder; `contended` is atomic), so a scrape sees a
    /// value that was true a moment ago.
    public var statistics: Statistics {
        var st = Statistics()
        for s in shards {
            st.entries += s.liveEntries
            st.bytes += s.liveBytes
            st.evictions += s.evictions
            st.reinsertions += s.reinsertions
            st.contended += s.contended.load(ordering: .relaxed)
        }
        return st
    }
}

/// One shard: a byte ring of entries plus an open-addressed index (linear probing,
/// backward-shift deletion) from hash to ring offset.
///
/// Entry layout (8-byte aligned):
///   0 hash u64 | 8 size u32 | 12 inserted u32 | 16 expires u32 | 20 staleUntil u32
///   24 msgLen u16 | 26 questionEnd u16 | 28 state u8 | 29 keyFlags u8 | 30 ttlCount u8 | 31 pad
///   32 message | then ttlCount UInt16 offsets of the records' TTL fields (0xFF: none stored)
public final class CacheShard {
    @usableFromInline static let headerSize = 32
    @usableFromInline static let live: UInt8 = 1
    @usableFromInline static let referenced: UInt8 = 2
    @usableFromInline static let refreshed: UInt8 = 4
    /// How many referenced entries one insert may move to the head before it evicts
    /// regardless; bounds the work (a few µs of memmove) of an insert when every entry is hot.
    @usableFromInline static let reinsertBudget = 256
    /// Answers with more records than this are aged by walking them instead.
    @usableFromInline static let maxTTLOffsets = 32

    /// Held only for a lookup's copy or an insert; waiters never wait (try-lock).
    let busy = Atomic<Bool>(false)
    let offsetScratch = UnsafeMutablePointer<UInt16>.allocate(capacity: CacheShard.maxTTLOffsets)
    @usableFromInline let arena: UnsafeMutableRawPointer
    @usableFromInline let arenaSize: Int
    @usableFromInline let index: UnsafeMutablePointer<UInt64>
    @usableFromInline let indexMask: Int
    @usableFromInline let maxIndexLoad: Int
    @usableFromInline var head = 0
    @usableFromInline var tail = 0
    /// Where the ring's data stops before wrapping to 0 (arenaSize when not wrapped).
    @usableFromInline var wrapAt: Int
    /// Entries physically in the ring, dead ones included.
    @usableFromInline var ringEntries = 0
    @usableFromInline var indexed = 0
    public internal(set) var liveEntries = 0
    public internal(set) var liveBytes = 0
    public internal(set) var evictions = 0
    public internal(set) var reinsertions = 0
    /// Bumped by a thread that did not get the lock, possibly by several at once: atomic
    /// (a plain `&+= 1` here was a data race, found by ThreadSanitizer).
    public let contended = Atomic<Int>(0)

    init(budget: Int) {
        // About 1/8 of the budget for the index: one 8-byte slot per 64 bytes of ring,
        // i.e. at most ~60 % load for typical 100-byte entries.
        var slots = 64
        while slots * 8 * 8 < budget { slots <<= 1 }
        index = CacheShard.allocateIndex(slots: slots)
        index.initialize(repeating: 0, count: slots)
        indexMask = slots - 1
        maxIndexLoad = slots * 3 / 4
        arenaSize = (budget - slots * 8) & ~7
        arena = .allocate(byteCount: arenaSize, alignment: 8)
        wrapAt = arenaSize
    }

    deinit {
        offsetScratch.deallocate()
        arena.deallocate()
        #if canImport(Glibc)
        free(index)
        #else
        index.deallocate()
        #endif
    }

    /// The hash index is probed at a random slot on every lookup and insert, and it is all
    /// resident from the start (zeroed). On 4 KiB pages a large index costs a TLB miss per
    /// probe — dearer still under virtualization's nested page walks — so it is 2 MiB-aligned
    /// and asks for transparent huge pages (THP in `madvise` mode, Debian's default). The ring
    /// itself stays on normal pages: it is written sequentially and its RSS should track use.
    static func allocateIndex(slots: Int) -> UnsafeMutablePointer<UInt64> {
        #if canImport(Glibc)
        let bytes = slots * 8
        let huge = 2 << 20
        var p: UnsafeMutableRawPointer?
        guard posix_memalign(&p, bytes >= huge ? huge : 64, bytes) == 0, let base = p else {
            fatalError("cache index: out of memory (\(bytes) bytes)")
        }
        if bytes >= huge { _ = madvise(base, bytes, MADV_HUGEPAGE) }
        return base.bindMemory(to: UInt64.self, capacity: slots)
        #else
        return .allocate(capacity: slots)
        #endif
    }

    func tryLock() -> Bool { busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged }
    func unlock() { busy.store(false, ordering: .releasing) }

    // MARK: entry fields

    @inline(__always) func u32(_ e: Int, _ f: Int) -> UInt32 { arena.load(fromByteOffset: e + f, as: UInt32.self) }
    @inline(__always) func setU32(_ e: Int, _ f: Int, _ v: UInt32) { arena.storeBytes(of: v, toByteOffset: e + f, as: UInt32.self) }
    @inline(__always) func state(_ e: Int) -> UInt8 { arena.load(fromByteOffset: e + 28, as: UInt8.self) }
    @inline(__always) func setState(_ e: Int, _ v: UInt8) { arena.storeBytes(of: v, toByteOffset: e + 28, as: UInt8.self) }
    @inline(__always) func size(_ e: Int) -> Int { Int(u32(e, 8)) }
    @inline(__always) func msgLen(_ e: Int) -> Int { Int(arena.load(fromByteOffset: e + 24, as: UInt16.self)) }

    func matches(_ e: Int, _ key: CacheKey) -> Bool {
        guard arena.load(fromByteOffset: e, as: UInt64.self) == key.hash,
              arena.load(fromByteOffset: e + 29, as: UInt8.self) == key.flags else { return false }
        let m = arena + e + CacheShard.headerSize
        let qe = Int(arena.load(fromByteOffset: e + 26, as: UInt16.self))
        guard qe == Header.size + key.nameLength + 4,
              Wire.u16(m, qe - 4) == key.qtype, Wire.u16(m, qe - 2) == key.qclass else { return false }
        return DNSName.equalIgnoringCase(m + Header.size, key.name, length: key.nameLength)
    }

    /// Index slot holding `key`, or -1.
    func find(_ key: CacheKey) -> Int {
        let tag = key.hash >> 32
        var i = Int(tag) & indexMask
        while true {
            let slot = index[i]
            if slot == 0 { return -1 }
            if slot >> 32 == tag && matches(Int(slot & 0xffff_ffff) - 1, key) { return i }
            i = (i + 1) & indexMask
        }
    }

    func lookup(_ key: CacheKey, now: UInt32, allowStale: Bool,
                into out: UnsafeMutableRawPointer, capacity: Int) -> CacheHit {
        var hit = CacheHit()
        let i = find(key)
        guard i >= 0 else { return hit }
        let e = Int(index[i] & 0xffff_ffff) - 1
        let inserted = u32(e, 12), expires = u32(e, 16), staleUntil = u32(e, 20)
        if now < expires {
            hit.status = .fresh
        } else if allowStale && now < staleUntil {
            hit.status = .stale
        } else {
            return hit
        }
        let len = msgLen(e)
        guard len <= capacity else { hit.status = .miss; return hit }
        var st = state(e) | CacheShard.referenced
        // Prefetch: asked for in the last tenth of its life, refresh once.
        if hit.status == .fresh && st & CacheShard.refreshed == 0 && (expires - now) * 10 <= (expires - inserted) {
            hit.wantsRefresh = true
            st |= CacheShard.refreshed
        }
        setState(e, st)
        let ttlCount = Int(arena.load(fromByteOffset: e + 30, as: UInt8.self))
        let extra = ttlCount == 0xFF ? 0 : 2 * ttlCount
        guard len + extra <= capacity else { hit.status = .miss; return hit }
        out.copyMemory(from: arena + e + CacheShard.headerSize, byteCount: len + extra)
        hit.ttlCount = ttlCount == 0xFF ? -1 : ttlCount
        hit.length = len
        hit.questionEnd = Int(arena.load(fromByteOffset: e + 26, as: UInt16.self))
        hit.age = now &- inserted
        return hit
    }

    func extendStale(_ key: CacheKey, now: UInt32, ttl: UInt32) {
        let i = find(key)
        guard i >= 0 else { return }
        let e = Int(index[i] & 0xffff_ffff) - 1
        // Re-date the entry so its TTLs read `ttl` and it counts as fresh until then.
        let m = arena + e + CacheShard.headerSize
        ResponseParser.ageTTLs(m, count: msgLen(e), questionEnd: Int(arena.load(fromByteOffset: e + 26, as: UInt16.self)),
                               elapsed: 0, override: ttl)
        setU32(e, 12, now)
        setU32(e, 16, now &+ ttl)
        setU32(e, 20, max(u32(e, 20), now &+ ttl))
        setState(e, state(e) | CacheShard.refreshed)
    }

    func insert(_ key: CacheKey, message: UnsafeRawPointer, length: Int, questionEnd: Int,
                ttl: UInt32, staleWindow: UInt32, now: UInt32) -> Bool {
        // TTL offsets go straight after the message in the entry.
        let offsets = offsetScratch   // guarded by the shard lock, like the arena
        let nOffsets = ResponseParser.ttlOffsets(message, count: length, questionEnd: questionEnd,
                                                 into: offsets, max: CacheShard.maxTTLOffsets)
        let extra = nOffsets < 0 ? 0 : 2 * nOffsets
        let need = (CacheShard.headerSize + length + extra + 7) & ~7
        guard need <= arenaSize / 4, length <= Int(UInt16.max) else { return false }
        let old = find(key)
        if old >= 0 { kill(slot: old) }
        while indexed >= maxIndexLoad { guard evictAtTail(budget: 0) else { return false } }
        var budget = CacheShard.reinsertBudget
        while true {
            if ringEntries == 0 { head = 0; tail = 0; wrapAt = arenaSize; break }
            if head > tail {
                if arenaSize - head >= need { break }
                // Not enough room before the end: the data stops here and continues at 0.
                wrapAt = head
                head = 0
                continue
            }
            // head < tail: the free gap is head..<tail; head == tail: the ring is full.
            if head < tail && tail - head >= need { break }
            let reinsert = budget > 0
            if reinsert { budget -= 1 }
            guard evictAtTail(budget: reinsert ? 1 : 0) else { return false }
        }
        let e = head
        arena.storeBytes(of: key.hash, toByteOffset: e, as: UInt64.self)
        setU32(e, 8, UInt32(need))
        setU32(e, 12, now)
        setU32(e, 16, now &+ ttl)
        setU32(e, 20, now &+ ttl &+ staleWindow)
        arena.storeBytes(of: UInt16(length), toByteOffset: e + 24, as: UInt16.self)
        arena.storeBytes(of: UInt16(questionEnd), toByteOffset: e + 26, as: UInt16.self)
        setState(e, CacheShard.live)
        arena.storeBytes(of: key.flags, toByteOffset: e + 29, as: UInt8.self)
        arena.storeBytes(of: nOffsets < 0 ? 0xFF : UInt8(nOffsets), toByteOffset: e + 30, as: UInt8.self)
        (arena + e + CacheShard.headerSize).copyMemory(from: message, byteCount: length)
        if extra > 0 { (arena + e + CacheShard.headerSize + length).copyMemory(from: offsets, byteCount: extra) }
        head += need
        ringEntries += 1
        liveEntries += 1
        liveBytes += need
        place(hash: key.hash, offset: e)
        return true
    }

    func place(hash: UInt64, offset: Int) {
        let tag = hash >> 32
        var i = Int(tag) & indexMask
        while index[i] != 0 { i = (i + 1) & indexMask }
        index[i] = tag << 32 | UInt64(offset + 1)
        indexed += 1
    }

    /// Index slot pointing at ring offset `e`.
    func slot(of e: Int) -> Int {
        let tag = arena.load(fromByteOffset: e, as: UInt64.self) >> 32
        var i = Int(tag) & indexMask
        while index[i] != 0 {
            if Int(index[i] & 0xffff_ffff) - 1 == e { return i }
            i = (i + 1) & indexMask
        }
        return -1
    }

    /// Marks the entry dead and removes its index slot; its bytes go when the tail passes.
    func kill(slot i: Int) {
        let e = Int(index[i] & 0xffff_ffff) - 1
        setState(e, state(e) & ~CacheShard.live)
        liveEntries -= 1
        liveBytes -= size(e)
        removeSlot(i)
    }

    func removeSlot(_ hole: Int) {
        var i = hole
        var j = i
        index[i] = 0
        indexed -= 1
        while true {
            j = (j + 1) & indexMask
            let s = index[j]
            if s == 0 { return }
            let home = Int(s >> 32) & indexMask
            // Move s back into the hole unless its home lies cyclically in (i, j].
            let inRange = i <= j ? (home > i && home <= j) : (home > i || home <= j)
            if !inRange {
                index[i] = s
                index[j] = 0
                i = j
            }
        }
    }

    /// Frees the entry at the tail. A live, referenced entry is moved to the head instead
    /// when `budget` allows (it only changes place, so the loop still makes progress by
    /// moving the hand). Returns false when the ring is empty.
    func evictAtTail(budget: Int) -> Bool {
        if ringEntries == 0 { return false }
        if tail >= wrapAt { tail = 0; wrapAt = arenaSize }
        let e = tail
        let sz = size(e)
        let st = state(e)
        if st & CacheShard.live != 0 && st & CacheShard.referenced != 0 && budget > 0 && head <= tail {
            // Second chance: slide the entry down to the head (the gap sits just before the tail).
            let i = slot(of: e)
            if head != e { (arena + head).copyMemory(from: arena + e, byteCount: sz) }
            setState(head, st & ~CacheShard.referenced)
            if i >= 0 { index[i] = (index[i] & 0xffff_ffff_0000_0000) | UInt64(head + 1) }
            head += sz
            tail += sz
            if tail >= wrapAt { tail = 0; wrapAt = arenaSize }
            reinsertions += 1
            return true
        }
        if st & CacheShard.live != 0 {
            let i = slot(of: e)
            if i >= 0 { kill(slot: i) }
            evictions += 1
        }
        tail += sz
        ringEntries -= 1
        if tail >= wrapAt { tail = 0; wrapAt = arenaSize }
        return true
    }
}
