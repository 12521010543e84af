import XCTest

/// Header bits in answers: AD and CD cleared for clients that set neither DO nor AD.
final class ResponseFlagsTests: EndToEndTestCase {
    func testADAndCDAreClearedForClientsWithoutDOOrAD() throws {
        let fake = try startFake(.ad)   // upstream sets AD and CD in every reply
        let kb = try startKubebridge(upstreams: [fake])
        let result = try dig(kb, "flags.example.test", options: ["+noadflag", "+nocdflag", "+nodnssec"])
        XCTAssertEqual(result.status, "NOERROR", "\(result)")
        XCTAssertFalse(result.flags.contains("ad"), "AD must be cleared: \(result)")
        XCTAssertFalse(result.flags.contains("cd"), "CD must be cleared: \(result)")

        var query = QueryBuilder(id: 0x5101, name: "flags-raw.example.test.")
        query.ad = false
        let raw = try XCTUnwrap(rawUDP(kb, query.bytes))
        XCTAssertFalse(raw.ad, "\(raw)")
        XCTAssertFalse(raw.cd, "\(raw)")
        XCTAssertTrue(raw.qr && raw.rd, "\(raw)")
    }

    func testADAndCDAreClearedOnCacheHitsToo() throws {
        let fake = try startFake(.ad)
        let kb = try startKubebridge(upstreams: [fake])
        // The first client asks with AD=1 and fills the cache; the second asks without.
        var withAD = QueryBuilder(id: 0x5201, name: "cached-flags.example.test.")
        withAD.ad = true
        let first = try XCTUnwrap(rawUDP(kb, withAD.bytes))
        XCTAssertEqual(first.addresses, ["192.0.2.1"], "\(first)")
        let second = try XCTUnwrap(rawUDP(kb, QueryBuilder(id: 0x5202, name: "cached-flags.example.test.").bytes))
        XCTAssertEqual(second.addresses, ["192.0.2.1"], "expected a cache hit: \(second)")
        XCTAssertFalse(second.ad, "AD must be cleared on a cache hit for a client without DO/AD: \(second)")
        XCTAssertFalse(second.cd, "CD must be cleared on a cache hit for a client without DO/AD: \(second)")
    }

    /// RFC 6891 6.1.1: no OPT in a response to a query without one; an EDNS query gets one.
    func testOPTRecordOnlyWhenTheClientSentOne() throws {
        let fake = try startFake(.ok)   // the fake always puts an OPT in its replies to EDNS queries
        let kb = try startKubebridge(upstreams: [fake])
        for name in ["opt.example.test.", "opt-uncached.example.test."] {
            var edns = QueryBuilder(id: 0x5301, name: name)
            edns.edns = (1232, 0, false)
            let plain = QueryBuilder(id: 0x5302, name: name)
            // Both orders: EDNS first (then plain from cache), and plain on a fresh name.
            let order = name.hasPrefix("opt.") ? [edns, plain] : [plain, edns]
            for query in order {
                let response = try XCTUnwrap(rawUDP(kb, query.bytes), "no reply to \(name)")
                XCTAssertEqual(response.rcode, DNSRcode.noError, "\(response)")
                if query.edns == nil {
                    XCTAssertNil(response.opt, "OPT in a reply to a query without EDNS: \(response)")
                } else {
                    XCTAssertNotNil(response.opt, "no OPT in a reply to an EDNS query: \(response)")
                }
            }
        }
    }
}
