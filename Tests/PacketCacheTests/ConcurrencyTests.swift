import Foundation
import XCTest
import DNSWire
@testable import PacketCache

/// Several threads on one shared cache, as the workers use it: inserts, lookups and
/// extendStale on overlapping keys, in a cache small enough that evictions and second-chance
/// moves happen all the time. Every answer carries a checksum of its own contents, so a hit
/// that mixed bytes of two inserts (a torn read) or of an evicted entry is caught. Meant to
/// run under ThreadSanitizer too (`swift test --sanitize=thread`, see Fuzz/README.md).
final class ConcurrencyTests: XCTestCase {
    /// More names than the caches below hold (~45 answers per 16 KiB shard): with fewer, every
    /// insert replaced an entry of the same name and live entries were evicted only by chance.
    static let names: [[UInt8]] = (0..<400).map { try! DNSName.wire(fromText: "n\($0).Concurrency.test") }

    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &* 0xBF58_476D_1CE4_E5B9
        z ^= z >> 31
        z = z &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 29)
    }

    static func nameHash(_ n: [UInt8]) -> UInt64 { n.reduce(0) { mix($0 ^ UInt64(DNSName.lower($1))) } }

    /// A canonical answer for `name` whose single record's RDATA is `v`, a checksum over
    /// the name and `v`, and a pattern derived from `v` (8 to 407 bytes of it).
    static func message(_ name: [UInt8], _ v: UInt64) -> [UInt8] {
        var m: [UInt8] = [0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0] + name + [0, 1, 0, 1]
        let pad = Int(v % 400) + 8
        var rdata: [UInt8] = []
        withUnsafeBytes(of: v.littleEndian) { rdata += $0 }
        withUnsafeBytes(of: mix(v ^ nameHash(name)).littleEndian) { rdata += $0 }
        rdata += (0..<pad).map { UInt8(truncatingIfNeeded: v &+ UInt64($0)) }
        m += [0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, UInt8(rdata.count >> 8), UInt8(rdata.count & 0xff)] + rdata
        return m
    }

    /// nil when `m` is a complete answer `message(name, v)` for some v.
    static func problem(_ m: [UInt8], name: [UInt8], questionEnd: Int) -> String? {
        let qe = Header.size + name.count + 4
        guard questionEnd == qe, m.count > qe + 12 + 16 else { return "length \(m.count), questionEnd \(questionEnd)" }
        guard zip(m[Header.size..<(qe - 4)], name).allSatisfy({ DNSName.lower($0) == DNSName.lower($1) }) else { return "question" }
        let rdlen = Int(m[qe + 10]) << 8 | Int(m[qe + 11])
        guard qe + 12 + rdlen == m.count, rdlen >= 16 else { return "rdlength \(rdlen) for \(m.count) bytes" }
        let r = qe + 12
        let v = m[r..<(r + 8)].withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        let check = m[(r + 8)..<(r + 16)].withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard check == mix(v ^ nameHash(name)) else { return "checksum" }
        guard rdlen == 16 + Int(v % 400) + 8 else { return "size does not match the value" }
        for i in 0..<(rdlen - 16) where m[r + 16 + i] != UInt8(truncatingIfNeeded: v &+ UInt64(i)) { return "pattern at \(i)" }
        return nil
    }

    final class Stats: @unchecked Sendable {
        let lock = NSLock()
        var inserts = 0, hits = 0, lookups = 0, failures: [String] = []
        func add(inserts i: Int, hits h: Int, lookups l: Int, failures f: [String]) {
            lock.lock(); inserts += i; hits += h; lookups += l; failures += f; lock.unlock()
        }
    }

    func hammer(cache: PacketCache, threads: Int, seconds: Double) -> Stats {
        let stats = Stats()
        let done = DispatchSemaphore(value: 0)
        let deadline = Date().addingTimeInterval(seconds)
        // At least 20,000 operations per thread even on a starved or sanitized (TSan: ~10x
        // slower) run, so the eviction and contention the tests assert always happen; never
        // more than 30 s.
        let hardDeadline = Date().addingTimeInterval(max(seconds, 30))
        for t in 0..<threads {
            let thread = Thread {
                var rng = UInt64(t + 1) &* 0x9E37_79B9_7F4A_7C15
                var out = [UInt8](repeating: 0, count: 65_536)
                var inserts = 0, hits = 0, lookups = 0, failures: [String] = []
                var i = 0
                while i < 2_000_000 && (i & 255 != 0 || Date() < deadline || (i < 20_000 && Date() < hardDeadline)) {
                    rng = ConcurrencyTests.mix(rng &+ 0x9E37_79B9_7F4A_7C15)
                    let name = ConcurrencyTests.names[Int(rng % UInt64(ConcurrencyTests.names.count))]
                    let now = UInt32(1_000 + i / 2_000)
                    let hit: CacheHit? = name.withUnsafeBytes { nm in
                        let key = CacheKey(name: nm.baseAddress!, nameLength: nm.count, qtype: 1, qclass: 1, flags: 0)
                        switch (rng >> 20) % 8 {
                        case 0, 1:
                            let v = (UInt64(t) << 56) | (rng >> 8 & 0x00ff_ffff_ffff_ffff)
                            let m = ConcurrencyTests.message(name, v)
                            let ok = m.withUnsafeBytes {
                                cache.insert(key, message: $0.baseAddress!, length: m.count, questionEnd: Header.size + name.count + 4,
                                             ttl: UInt32(5 + (rng >> 40) % 60), staleWindow: UInt32((rng >> 50) % 30), now: now)
                            }
                            if ok { inserts += 1 }
                            return nil
                        case 2:
                            cache.extendStale(key, now: now, ttl: 30)
                            return nil
                        default:
                            lookups += 1
                            return out.withUnsafeMutableBytes {
                                cache.lookup(key, now: now, allowStale: rng & 1 == 0, into: $0.baseAddress!, capacity: $0.count)
                            }
                        }
                    }
                    if let h = hit, h.status != .miss {
                        hits += 1
                        if let p = ConcurrencyTests.problem(Array(out[..<h.length]), name: name, questionEnd: h.questionEnd) {
                            failures.append("thread \(t), op \(i): \(p)")
                        }
                    }
                    i += 1
                }
                stats.add(inserts: inserts, hits: hits, lookups: lookups, failures: failures)
                done.signal()
            }
            thread.start()
        }
        for _ in 0..<threads { done.wait() }
        return stats
    }

    func testFourThreadsNeverSeeATornAnswer() {
        // 64 KiB in 4 shards: ~16 KiB each, a few dozen answers, constant eviction.
        let cache = PacketCache(capacityBytes: 64 << 10, shardCount: 4)
        let s = hammer(cache: cache, threads: 4, seconds: 1.5)
        XCTAssertEqual(s.failures.prefix(5), [], "\(s.failures.count) bad hits")
        XCTAssertGreaterThan(s.inserts, 100)
        XCTAssertGreaterThan(s.hits, 100, "lookups \(s.lookups)")
        let st = cache.statistics
        XCTAssertLessThanOrEqual(st.bytes, cache.capacityBytes)
        XCTAssertGreaterThan(st.evictions, 1_000, "the test is meant to evict all the time")
    }

    func testOneShardContendedByFourThreads() {
        // Every key in one shard: the try-lock is contended all the time; lookups that find
        // it busy are misses, inserts are skipped, and nothing is ever half-written.
        let cache = PacketCache(capacityBytes: 32 << 10, shardCount: 1)
        let s = hammer(cache: cache, threads: 4, seconds: 1.0)
        XCTAssertEqual(s.failures.prefix(5), [], "\(s.failures.count) bad hits")
        XCTAssertGreaterThan(s.hits, 0)
    }
}
