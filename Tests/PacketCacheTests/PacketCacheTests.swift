import XCTest
import DNSWire
@testable import PacketCache

/// Builds canonical answers (no OPT, ID 0) for cache tests.
func answer(_ name: String, type: UInt16 = 1, ttl: UInt32 = 300, rdata: [UInt8] = [192, 0, 2, 1]) -> [UInt8] {
    var storage = [UInt8](repeating: 0, count: 65_536)
    return storage.withUnsafeMutableBytes { raw -> [UInt8] in
        var b = MessageBuilder(buffer: raw.baseAddress!, capacity: raw.count, id: 0, flags: Header.qr | Header.rd | Header.ra)
        let n = try! DNSName.wire(fromText: name)
        b.question(n, type: type)
        b.record(.answer, owner: n, type: type, ttl: ttl, rdata: rdata)
        return b.bytes
    }
}

final class PacketCacheTests: XCTestCase {
    var out = [UInt8](repeating: 0, count: 65_536)

    func withKey<T>(_ name: String, type: UInt16 = 1, flags: UInt8 = 0, hash: UInt64? = nil, _ body: (CacheKey) -> T) -> T {
        let w = try! DNSName.wire(fromText: name)
        return w.withUnsafeBytes { raw in
            let k = hash.map { CacheKey(name: raw.baseAddress!, nameLength: w.count, qtype: type, qclass: 1, flags: flags, hash: $0) }
                ?? CacheKey(name: raw.baseAddress!, nameLength: w.count, qtype: type, qclass: 1, flags: flags)
            return body(k)
        }
    }

    @discardableResult
    func insert(_ c: PacketCache, _ name: String, type: UInt16 = 1, flags: UInt8 = 0, ttl: UInt32 = 300,
                stale: UInt32 = 0, now: UInt32 = 100, hash: UInt64? = nil) -> Bool {
        let m = answer(name, type: type, ttl: ttl)
        return withKey(name, type: type, flags: flags, hash: hash) { k in
            m.withUnsafeBytes { c.insert(k, message: $0.baseAddress!, length: m.count, questionEnd: 12 + k.nameLength + 4,
                                         ttl: ttl, staleWindow: stale, now: now) }
        }
    }

    func lookup(_ c: PacketCache, _ name: String, type: UInt16 = 1, flags: UInt8 = 0, now: UInt32,
                stale: Bool = false, hash: UInt64? = nil) -> CacheHit {
        withKey(name, type: type, flags: flags, hash: hash) { k in
            out.withUnsafeMutableBytes { c.lookup(k, now: now, allowStale: stale, into: $0.baseAddress!, capacity: $0.count) }
        }
    }

    func testHitReturnsAgeAndCaseInsensitiveMatch() {
        let c = PacketCache(capacityBytes: 1 << 20, shardCount: 4)
        XCTAssertTrue(insert(c, "web.prod.svc.cluster.local", ttl: 30, now: 1000))
        let h = lookup(c, "WEB.prod.SVC.cluster.local", now: 1012)
        XCTAssertEqual(h.status, .fresh)
        XCTAssertEqual(h.age, 12)
        XCTAssertEqual(h.length, answer("web.prod.svc.cluster.local", ttl: 30).count)
        XCTAssertEqual(lookup(c, "web.prod.svc.cluster.local", now: 1030).status, .miss, "expires exactly at TTL")
    }

    func testTypesAndFlagsAreSeparateKeys() {
        let c = PacketCache(capacityBytes: 1 << 20, shardCount: 4)
        insert(c, "a.test", type: 1)
        XCTAssertEqual(lookup(c, "a.test", type: 28, now: 100).status, .miss)
        XCTAssertEqual(lookup(c, "a.test", type: 1, flags: CacheKey.dnssecOK, now: 100).status, .miss)
        XCTAssertEqual(lookup(c, "a.test", type: 1, flags: CacheKey.checkingDisabled, now: 100).status, .miss)
        XCTAssertEqual(lookup(c, "a.test", type: 1, now: 100).status, .fresh)
    }

    func testKeyIsVerifiedOnHashCollision() {
        let c = PacketCache(capacityBytes: 1 << 20, shardCount: 1)
        insert(c, "one.test", hash: 42)
        insert(c, "two.test", hash: 42)
        XCTAssertEqual(lookup(c, "one.test", now: 100, hash: 42).status, .fresh)
        XCTAssertEqual(lookup(c, "two.test", now: 100, hash: 42).status, .fresh)
        XCTAssertEqual(lookup(c, "three.test", now: 100, hash: 42).status, .miss)
        let h = lookup(c, "two.test", now: 100, hash: 42)
        XCTAssertEqual(Array(out[12..<21]), [3, 0x74, 0x77, 0x6f, 4, 0x74, 0x65, 0x73, 0x74])
        XCTAssertEqual(h.questionEnd, 12 + 10 + 4)
    }

    func testStaleWindowAndExtend() {
        let c = PacketCache(capacityBytes: 1 << 20, shardCount: 1)
        insert(c, "svc.cluster.local", ttl: 30, stale: 3600, now: 0)
        XCTAssertEqual(lookup(c, "svc.cluster.local", now: 40).status, .miss)
        XCTAssertEqual(lookup(c, "svc.cluster.local", now: 40, stale: true).status, .stale)
        XCTAssertEqual(lookup(c, "svc.cluster.local", now: 3631, stale: true).status, .miss)
        withKey("svc.cluster.local") { c.extendStale($0, now: 40, ttl: 30) }
        let h = lookup(c, "svc.cluster.local", now: 45)
        XCTAssertEqual(h.status, .fresh)
        XCTAssertEqual(h.age, 5)
        // The stored TTLs were rewritten to the stale TTL.
        XCTAssertEqual(Wire.u32(out.withUnsafeBytes { $0.baseAddress! }, h.questionEnd + 2 + 4), 30)
    }

    func testPrefetchSignalledOnceInLastTenth() {
        let c = PacketCache(capacityBytes: 1 << 20, shardCount: 1)
        insert(c, "p.test", ttl: 100, now: 0)
        XCTAssertFalse(lookup(c, "p.test", now: 50).wantsRefresh)
        XCTAssertTrue(lookup(c, "p.test", now: 91).wantsRefresh)
        XCTAssertFalse(lookup(c, "p.test", now: 92).wantsRefresh, "only the first caller refreshes")
    }

    func testReplaceKeepsOneEntry() {
        let c = PacketCache(capacityBytes: 1 << 20, shardCount: 1)
        insert(c, "r.test", ttl: 10, now: 0)
        insert(c, "r.test", ttl: 500, now: 5)
        XCTAssertEqual(c.statistics.entries, 1)
        XCTAssertEqual(lookup(c, "r.test", now: 400).status, .fresh)
    }

    func testMemoryBoundAndScanResistance() {
        // 256 KiB in one shard; a hot set of 200 names read between every insert of a
        // 50,000-name scan of one-hit wonders must stay cached.
        let c = PacketCache(capacityBytes: 256 << 10, shardCount: 1)
        let hot = (0..<200).map { "hot\($0).example.test" }
        for h in hot { insert(c, h, now: 1) }
        for i in 0..<50_000 {
            insert(c, "scan\(i).flood.test", now: 1)
            _ = lookup(c, hot[i % hot.count], now: 1)
        }
        let kept = hot.filter { lookup(c, $0, now: 1).status == .fresh }.count
        XCTAssertGreaterThanOrEqual(kept, 190, "hot names evicted by a scan")
        let st = c.statistics
        XCTAssertLessThanOrEqual(st.bytes, c.capacityBytes)
        XCTAssertGreaterThan(st.evictions, 40_000)
        XCTAssertGreaterThan(st.reinsertions, 0)
        // Plain FIFO (no reads) keeps only the newest names.
        XCTAssertEqual(lookup(c, "scan0.flood.test", now: 1).status, .miss)
        XCTAssertEqual(lookup(c, "scan49999.flood.test", now: 1).status, .fresh)
    }

    func testRingWrapsManyTimesWithMixedSizes() {
        let c = PacketCache(capacityBytes: 64 << 10, shardCount: 1)
        for i in 0..<20_000 {
            let big = i % 7 == 0
            let m = answer("n\(i).test", ttl: 60, rdata: big ? Array(repeating: 1, count: 900) : [1, 2, 3, 4])
            withKey("n\(i).test") { k in
                _ = m.withUnsafeBytes { c.insert(k, message: $0.baseAddress!, length: m.count, questionEnd: 12 + k.nameLength + 4, ttl: 60, staleWindow: 0, now: 1) }
            }
            let h = lookup(c, "n\(i).test", now: 1)
            XCTAssertEqual(h.status, .fresh, "just inserted n\(i)")
            XCTAssertEqual(Array(out[..<h.length]), m, "content of n\(i)")
        }
        XCTAssertLessThanOrEqual(c.statistics.bytes, c.capacityBytes)
    }

    func testOversizedAnswerIsNotCached() {
        let c = PacketCache(capacityBytes: 64 << 10, shardCount: 4)   // 16 KiB shards
        let m = answer("big.test", rdata: Array(repeating: 7, count: 8000))
        let ok = withKey("big.test") { k in m.withUnsafeBytes { c.insert(k, message: $0.baseAddress!, length: m.count, questionEnd: 26, ttl: 60, staleWindow: 0, now: 1) } }
        XCTAssertFalse(ok)
    }
}
