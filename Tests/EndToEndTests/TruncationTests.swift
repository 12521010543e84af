import XCTest

/// TC=1 towards the client when the answer exceeds its UDP size (512 without EDNS,
/// else min(advertised, 1232)), and TCP retry towards a truncating upstream.
final class TruncationTests: EndToEndTestCase {
    private let big = "big.prod.svc.cluster.local."         // ~2.1 KB of TXT
    private let medium = "medium.prod.svc.cluster.local."   // ~650 B of TXT

    private func rawTXT(_ kb: KubebridgeProcess, _ name: String, id: UInt16, ednsSize: UInt16?) throws -> DNSResponse {
        var query = QueryBuilder(id: id, name: name, type: DNSType.txt)
        if let ednsSize { query.edns = (ednsSize, 0, false) }
        return try XCTUnwrap(rawUDP(kb, query.bytes, timeout: 5), "no UDP reply to \(name) TXT (EDNS \(ednsSize.map(String.init) ?? "none"))")
    }

    func testLargeAnswerWithoutEDNSIsTruncatedTo512() throws {
        let kb = try startKubebridgeWithKnots()
        let viaDig = try dig(kb, big, "TXT", options: ["+noedns", "+ignore"])
        XCTAssertEqual(viaDig.status, "NOERROR", "\(viaDig)")
        XCTAssertTrue(viaDig.tc, "expected TC=1: \(viaDig)")

        let raw = try rawTXT(kb, big, id: 0x7001, ednsSize: nil)
        XCTAssertTrue(raw.tc, "\(raw)")
        XCTAssertEqual(raw.id, 0x7001)
        XCTAssertEqual(raw.questionName, big)
        XCTAssertLessThanOrEqual(raw.raw.count, 512, "a UDP reply to a client without EDNS must fit 512 bytes")
    }

    func testLargeAnswerWithEDNSIsTruncatedAt1232EvenIfClientOffersMore() throws {
        let kb = try startKubebridgeWithKnots()
        let raw = try rawTXT(kb, big, id: 0x7002, ednsSize: 4096)
        XCTAssertTrue(raw.tc, "~2.1 KB answer, client offers 4096, server cap is 1232: expected TC=1, got \(raw)")
        XCTAssertLessThanOrEqual(raw.raw.count, 1232)
        let viaDig = try dig(kb, big, "TXT", options: ["+bufsize=4096", "+ignore"])
        XCTAssertTrue(viaDig.tc, "\(viaDig)")
    }

    func testMediumAnswerFitsOnlyWhenTheClientAdvertisesEnough() throws {
        let kb = try startKubebridgeWithKnots()
        let noEDNS = try rawTXT(kb, medium, id: 0x7003, ednsSize: nil)
        XCTAssertTrue(noEDNS.tc, "~650 B answer without EDNS: expected TC=1, got \(noEDNS)")
        XCTAssertLessThanOrEqual(noEDNS.raw.count, 512)

        let edns1232 = try rawTXT(kb, medium, id: 0x7004, ednsSize: 1232)
        XCTAssertFalse(edns1232.tc, "\(edns1232)")
        XCTAssertEqual(edns1232.answers.filter { $0.type == DNSType.txt }.count, Zones.mediumTXTCount, "\(edns1232)")
        XCTAssertNotNil(edns1232.opt, "an EDNS query should get an OPT record back: \(edns1232)")

        let edns600 = try rawTXT(kb, medium, id: 0x7005, ednsSize: 600)
        XCTAssertTrue(edns600.tc, "~650 B answer, client offers 600: expected TC=1, got \(edns600)")
        XCTAssertLessThanOrEqual(edns600.raw.count, 600)
    }

    func testMaxUDPSizeLowersTheCap() throws {
        let kb = try startKubebridgeWithKnots(["--max-udp-size", "600"])
        let capped = try rawTXT(kb, medium, id: 0x7006, ednsSize: 1232)
        XCTAssertTrue(capped.tc, "~650 B answer, client offers 1232, --max-udp-size 600: expected TC=1, got \(capped)")
        XCTAssertLessThanOrEqual(capped.raw.count, 600)
        let small = try XCTUnwrap(rawUDP(kb, QueryBuilder(id: 0x7007, name: "web.prod.svc.cluster.local.").bytes))
        XCTAssertEqual(small.addresses, ["172.21.0.10"], "\(small)")
    }

    func testClientRetryOverTCPGetsTheFullAnswer() throws {
        let kb = try startKubebridgeWithKnots()
        let retried = try dig(kb, big, "TXT", options: ["+noedns"])
        XCTAssertTrue(retried.retriedOverTCP, "dig should have seen TC=1 and retried: \(retried)")
        XCTAssertEqual(retried.transport, "TCP", "\(retried)")
        XCTAssertEqual(retried.status, "NOERROR", "\(retried)")
        XCTAssertEqual(retried.rdata("TXT").count, Zones.bigTXTCount, "\(retried)")

        let kdig = try Dig.kdig(big, "TXT", server: kb.host, port: kb.port)   // kdig falls back to TCP on TC as well
        XCTAssertEqual(kdig.rdata("TXT").count, Zones.bigTXTCount, "\(kdig)")

        let tcp = try dig(kb, big, "TXT", options: ["+tcp"])
        XCTAssertEqual(tcp.rdata("TXT").count, Zones.bigTXTCount, "\(tcp)")
        XCTAssertTrue(tcp.rdata("TXT").contains { $0.contains("009-") }, "\(tcp)")
    }

    func testCachedLargeAnswerIsStillTruncatedOverUDP() throws {
        let kb = try startKubebridgeWithKnots()
        // Fill the cache over TCP, then ask over UDP: the cache hit must be truncated too.
        let tcp = try dig(kb, big, "TXT", options: ["+tcp"])
        XCTAssertEqual(tcp.rdata("TXT").count, Zones.bigTXTCount, "\(tcp)")
        let noEDNS = try rawTXT(kb, big, id: 0x7008, ednsSize: nil)
        XCTAssertTrue(noEDNS.tc, "\(noEDNS)")
        XCTAssertLessThanOrEqual(noEDNS.raw.count, 512)
        let edns = try rawTXT(kb, big, id: 0x7009, ednsSize: 1232)
        XCTAssertTrue(edns.tc, "\(edns)")
        XCTAssertLessThanOrEqual(edns.raw.count, 1232)
        XCTAssertEqual(edns.id, 0x7009)
    }

    func testTruncatedUpstreamReplyIsRetriedOverTCP() throws {
        let fake = try startFake(.tc)
        let kb = try startKubebridge(upstreams: [fake])
        let result = try dig(kb, "truncated.example.test", options: ["+ignore"])
        XCTAssertEqual(result.status, "NOERROR", "\(result)")
        XCTAssertFalse(result.tc, "the client should get the full answer over UDP, not TC=1: \(result)")
        XCTAssertEqual(result.transport, "UDP", "\(result)")
        XCTAssertEqual(result.addresses.count, 1, "\(result)")
        XCTAssertTrue(result.addresses.first?.hasPrefix("192.0.2.") ?? false, "\(result)")
        let state = try fake.state()
        XCTAssertEqual(state.udp, 1, "upstream UDP queries: \(state.queries)")
        XCTAssertEqual(state.tcp, 1, "upstream TCP queries (retry after TC=1): \(state.queries)")
    }
}
