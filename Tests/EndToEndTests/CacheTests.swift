import XCTest

/// The response cache: a repeated query needs no second upstream query, TTLs count
/// down, and a cached answer still carries the asking client's ID and question case.
final class CacheTests: EndToEndTestCase {
    func testRepeatedQueryIsAnsweredFromCache() throws {
        let fake = try startFake(.ok)
        let kb = try startKubebridge(upstreams: [fake])
        let first = try dig(kb, "cached.example.test")
        let afterFirst = try fake.state()
        let second = try dig(kb, "cached.example.test")
        assertAnswer(first, "A", ["192.0.2.1"])
        assertAnswer(second, "A", ["192.0.2.1"])   // a second upstream query would have said 192.0.2.2
        let state = try fake.state()
        XCTAssertEqual(afterFirst.total, 1, "upstream queries for the first lookup: \(afterFirst.queries)")
        XCTAssertEqual(state.total, afterFirst.total, "the repeated question went upstream again: \(state.queries)")
        let ttl1 = try XCTUnwrap(first.answers.first?.ttl), ttl2 = try XCTUnwrap(second.answers.first?.ttl)
        XCTAssertLessThanOrEqual(ttl1, 300)
        XCTAssertLessThanOrEqual(ttl2, ttl1, "cached TTL must not grow")
    }

    func testCachedTTLCountsDown() throws {
        let fake = try startFake(.ok)
        let kb = try startKubebridge(upstreams: [fake])
        let first = try dig(kb, "ttl.example.test")
        Thread.sleep(forTimeInterval: 1.2)
        let second = try dig(kb, "ttl.example.test")
        let ttl1 = try XCTUnwrap(first.answers.first?.ttl, "\(first)"), ttl2 = try XCTUnwrap(second.answers.first?.ttl, "\(second)")
        XCTAssertLessThan(ttl2, ttl1, "TTL did not count down after 1.2 s: \(ttl1) then \(ttl2)")
        XCTAssertGreaterThanOrEqual(ttl2, ttl1 - 3, "TTL dropped too fast: \(ttl1) then \(ttl2)")
        XCTAssertEqual(try fake.state().total, 1)
    }

    func testCachedAnswerCarriesTheClientsIDAndQuestionCase() throws {
        let fake = try startFake(.ok)
        let kb = try startKubebridge(upstreams: [fake])
        let firstQuery = QueryBuilder(id: 0x1111, name: "cache-case.example.test.")
        let first = try XCTUnwrap(rawUDP(kb, firstQuery.bytes))
        XCTAssertEqual(first.addresses, ["192.0.2.1"], "\(first)")
        let secondQuery = QueryBuilder(id: 0x2222, name: "CACHE-Case.Example.TEST.")
        let second = try XCTUnwrap(rawUDP(kb, secondQuery.bytes))
        XCTAssertEqual(second.id, 0x2222, "cached answer must carry the new query's ID")
        XCTAssertEqual(second.questionBytes, Array(secondQuery.bytes[12...]), "cached answer must echo the new question's case: \(second)")
        XCTAssertEqual(second.addresses, ["192.0.2.1"], "\(second)")
        // Names compare case-insensitively (RFC 4343), so this is the same cache entry.
        XCTAssertEqual(try fake.state().total, 1, "a case variant of a cached name went upstream again")
    }

    func testCacheIsSharedBetweenUDPAndTCP() throws {
        let fake = try startFake(.ok)
        let kb = try startKubebridge(upstreams: [fake])
        assertAnswer(try dig(kb, "shared.example.test"), "A", ["192.0.2.1"])
        assertAnswer(try dig(kb, "shared.example.test", options: ["+tcp"]), "A", ["192.0.2.1"])
        XCTAssertEqual(try fake.state().total, 1)
    }
}
