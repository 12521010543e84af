import XCTest
@testable import DNSWire

final class QueryParserTests: XCTestCase {
    func testParsesPlainQuery() {
        let m = Msg.query("Web.Prod.svc.cluster.local", type: RRType.aaaa, id: 0xbeef)
        let q = Msg.parseQuery(m)
        XCTAssertEqual(q.verdict, .query)
        XCTAssertEqual(q.id, 0xbeef)
        XCTAssertEqual(q.qtype, RRType.aaaa)
        XCTAssertEqual(q.qclass, 1)
        XCTAssertEqual(q.nameLength, 28)
        XCTAssertEqual(q.labelCount, 5)
        XCTAssertEqual(q.questionEnd, m.count)
        XCTAssertFalse(q.hasEDNS)
        XCTAssertEqual(q.udpSize, 512)
        XCTAssertTrue(q.recursionDesired)
    }

    func testEDNSSizeAndDOBit() {
        let q = Msg.parseQuery(Msg.query("example.test", edns: 4096, dnssecOK: true))
        XCTAssertEqual(q.verdict, .query)
        XCTAssertTrue(q.hasEDNS)
        XCTAssertEqual(q.udpSize, 4096)
        XCTAssertTrue(q.dnssecOK)
        // An advertised size below 512 means 512 (RFC 6891 6.2.3).
        XCTAssertEqual(Msg.parseQuery(Msg.query("example.test", edns: 100)).udpSize, 512)
    }

    func testVerdictsForBadInput() {
        XCTAssertEqual(Msg.parseQuery(Array(Msg.query("a.test").prefix(11))).verdict, .drop)
        XCTAssertEqual(Msg.parseQuery(Msg.query("a.test", flags: Header.qr)).verdict, .drop)
        XCTAssertEqual(Msg.parseQuery(Msg.query("a.test", flags: 0x2000)).verdict, .notImp)   // opcode 4 NOTIFY
        XCTAssertEqual(Msg.parseQuery(Msg.query("a.test", type: RRType.axfr)).verdict, .refused)
        let two = Msg.build { b in b.question(Msg.name("a.test"), type: 1); b.question(Msg.name("b.test"), type: 1) }
        XCTAssertEqual(Msg.parseQuery(two).verdict, .formErr)
        var none = Msg.query("a.test")
        none[5] = 0
        XCTAssertEqual(Msg.parseQuery(none).verdict, .formErr)
    }

    func testBytesAfterTheLastRecordAreFormErr() {
        for m in [Msg.query("a.test"), Msg.query("a.test", edns: 1232)] {
            for junk in [[UInt8(0)], [0xAB, 0xCD], [UInt8](repeating: 0, count: 3_900)] {
                let q = Msg.parseQuery(m + junk)
                XCTAssertEqual(q.verdict, .formErr, "\(junk.count) trailing bytes")
                XCTAssertEqual(q.error, .trailingData)
            }
            XCTAssertEqual(Msg.parseQuery(m).verdict, .query)
        }
    }

    func testEDNSVersionOneIsBadVers() {
        var m = Msg.query("a.test", edns: 1232)
        m[m.count - 5] = 1   // OPT TTL = ext-rcode, version, flags; then RDLEN
        XCTAssertEqual(Msg.parseQuery(m).verdict, .badVers)
    }

    func testTruncationAtEveryOffsetNeverTraps() {
        let m = Msg.query("www.example.test", edns: 1232, dnssecOK: true)
        for cut in 0..<m.count {
            let q = Msg.parseQuery(Array(m.prefix(cut)))
            XCTAssertTrue(cut < 12 ? q.verdict == .drop : q.verdict == .formErr, "cut at \(cut): \(q.verdict)")
        }
        XCTAssertEqual(Msg.parseQuery(m).verdict, .query)
    }

    func testOverLongLabelAndName() {
        var m: [UInt8] = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]
        m += [64] + Array(repeating: UInt8(ascii: "a"), count: 64) + [0, 0, 1, 0, 1]
        let q = Msg.parseQuery(m)
        XCTAssertEqual(q.verdict, .formErr)
        XCTAssertEqual(q.error, .badLabelType)
        var long: [UInt8] = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]
        for _ in 0..<4 { long += [63] + Array(repeating: UInt8(ascii: "a"), count: 63) }
        long += [0, 0, 1, 0, 1]
        XCTAssertEqual(Msg.parseQuery(long).error, .nameTooLong)
    }

    func testPointerInQuestionIsFormErr() {
        let m: [UInt8] = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x61, 0xc0, 0x0c, 0, 1, 0, 1]
        XCTAssertEqual(Msg.parseQuery(m).error, .pointerInQuestion)
    }
}

final class NameTests: XCTestCase {
    func testFoldWordMatchesBytewiseLower() {
        for b in 0...255 {
            let w = UInt64(b) | UInt64(b) << 24 | 0x4100_0000_5a00_7a00
            let folded = DNSName.foldWord(w)
            for i in 0..<8 {
                let byte = UInt8(truncatingIfNeeded: w >> UInt64(8 * i))
                XCTAssertEqual(UInt8(truncatingIfNeeded: folded >> UInt64(8 * i)), DNSName.lower(byte), "byte \(byte)")
            }
        }
        XCTAssertEqual(DNSName.lower(UInt8(ascii: "A")), UInt8(ascii: "a"))
        XCTAssertEqual(DNSName.lower(UInt8(ascii: "@")), UInt8(ascii: "@"))
        XCTAssertEqual(DNSName.lower(UInt8(ascii: "[")), UInt8(ascii: "["))
        XCTAssertEqual(DNSName.lower(0xc1), 0xc1)
    }

    func testCaseInsensitiveCompare() {
        let a = Msg.name("Tomcat.DAC-prod.svc.Cluster.Local")
        let b = Msg.name("tomcat.dac-prod.svc.cluster.local")
        var upper = a
        upper[1] = UInt8(ascii: "X")
        a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in
                XCTAssertTrue(DNSName.equalIgnoringCase(pa.baseAddress!, pb.baseAddress!, length: a.count))
            }
            upper.withUnsafeBytes { pu in
                XCTAssertFalse(DNSName.equalIgnoringCase(pa.baseAddress!, pu.baseAddress!, length: a.count))
            }
        }
    }

    func testTextRoundTrip() throws {
        XCTAssertEqual(DNSName.text(try DNSName.wire(fromText: "Web.Prod.svc.cluster.local.")), "web.prod.svc.cluster.local.")
        XCTAssertEqual(try DNSName.wire(fromText: "."), [0])
        XCTAssertThrowsError(try DNSName.wire(fromText: "a..b"))
        XCTAssertThrowsError(try DNSName.wire(fromText: String(repeating: "x", count: 64) + ".test"))
    }

    func testPointerLoopsAndForwardPointersRejected() {
        // Name at 12 jumps to 14, which jumps back to 12: a loop.
        var m: [UInt8] = Array(repeating: 0, count: 12)
        m += [0xc0, 14, 0xc0, 12]
        var c = WireCursor(m.withUnsafeBytes { $0.baseAddress! }, count: m.count, offset: 12)
        m.withUnsafeBytes { raw in
            c = WireCursor(raw.baseAddress!, count: raw.count, offset: 12)
            DNSName.skip(&c)
        }
        XCTAssertEqual(c.error, .forwardPointer)
        // Backward jumps that revisit a later position: 12: "a" then pointer to 12+? -> loop detected by the limit.
        var loop: [UInt8] = Array(repeating: 0, count: 12)
        loop += [1, 0x61, 0xc0, 12]       // a.<pointer to 12> loops
        loop.withUnsafeBytes { raw in
            var k = WireCursor(raw.baseAddress!, count: raw.count, offset: 14)
            DNSName.skip(&k)
            // Rejected either way: the jump target lies before the pointer, but reading on
            // from it runs back into the pointer itself.
            XCTAssertTrue(k.error == .pointerLoop || k.error == .forwardPointer, "\(String(describing: k.error))")
        }
    }

    func testExpandFollowsCompression() {
        let seed = loadSeed("response-compressed.bin")
        seed.withUnsafeBytes { raw in
            var out = [UInt8](repeating: 0, count: 256)
            // The CNAME target at the end of the first answer: c0 10 -> "example.test".
            var c = WireCursor(raw.baseAddress!, count: raw.count, offset: 12 + 18 + 4 + 12)
            let n = out.withUnsafeMutableBytes { DNSName.expand(&c, into: $0.baseAddress!, fold: false) }
            XCTAssertNil(c.error)
            XCTAssertEqual(DNSName.text(Array(out[..<n])), "example.test.")
        }
    }
}

final class ResponseTests: XCTestCase {
    func testMinTTLAndOPT() {
        let r = Msg.parseResponse(loadSeed("response-compressed.bin"))
        XCTAssertNil(r.error)
        XCTAssertEqual(r.answerCount, 2)
        XCTAssertEqual(r.minTTL, 60)
        XCTAssertGreaterThan(r.optStart, 0)
        XCTAssertEqual(r.optEnd - r.optStart, 11)
    }

    func testNegativeTTLIsMinOfSOATTLAndMinimum() {
        let r = Msg.parseResponse(loadSeed("response-nxdomain-soa.bin"))
        XCTAssertNil(r.error)
        XCTAssertEqual(r.rcode, RCode.nxDomain.rawValue)
        XCTAssertEqual(r.negativeTTL, 120)
        // SOA TTL lower than MINIMUM wins.
        let m = Msg.build(flags: Header.qr | 3) { b in
            b.question(Msg.name("nope.example.test"), type: 1)
            b.record(.authority, owner: Msg.name("example.test"), type: RRType.soa, ttl: 45,
                     rdata: [0, 0] + [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0])
        }
        XCTAssertEqual(Msg.parseResponse(m).negativeTTL, 45)
    }

    func testHostileResponsesRejected() {
        XCTAssertNotNil(Msg.parseResponse(loadSeed("response-pointer-loop.bin")).error)
        XCTAssertEqual(Msg.parseResponse(loadSeed("response-forward-pointer.bin")).error, .forwardPointer)
        XCTAssertEqual(Msg.parseResponse(loadSeed("response-rdlen-overrun.bin")).error, .truncated)
        let good = loadSeed("response-compressed.bin")
        for cut in 0..<good.count { XCTAssertNotNil(Msg.parseResponse(Array(good.prefix(cut))).error, "cut \(cut)") }
    }

    func testAgeTTLsAndRemoveOPT() {
        var m = loadSeed("response-compressed.bin")
        let r = Msg.parseResponse(m)
        let n = m.withUnsafeMutableBytes { raw -> Int in
            let n = ResponseParser.removeAdditional(raw.baseAddress!, count: raw.count, start: r.optStart, end: r.optEnd)
            ResponseParser.ageTTLs(raw.baseAddress!, count: n, questionEnd: r.questionEnd, elapsed: 100)
            return n
        }
        m = Array(m.prefix(n))
        let after = Msg.parseResponse(m)
        XCTAssertNil(after.error)
        XCTAssertEqual(after.optStart, -1)
        XCTAssertEqual(after.minTTL, 0)   // 60 - 100 floors at 0
        m.withUnsafeMutableBytes { ResponseParser.ageTTLs($0.baseAddress!, count: n, questionEnd: r.questionEnd, elapsed: 0, override: 30) }
        XCTAssertEqual(Msg.parseResponse(m).minTTL, 30)
    }

    func testErrorAnswerEchoesQuestionAndOPT() {
        let q = Msg.query("a.test", id: 77, edns: 4096)
        let info = Msg.parseQuery(q)
        var out = [UInt8](repeating: 0, count: 512)
        let n = q.withUnsafeBytes { qb in
            out.withUnsafeMutableBytes { ResponseWriter.error(query: qb.baseAddress!, info: info, rcode: .refused, into: $0.baseAddress!, maxUDPSize: 1232) }
        }
        let r = Msg.parseResponse(Array(out[..<n]))
        XCTAssertNil(r.error)
        XCTAssertEqual(r.id, 77)
        XCTAssertEqual(r.rcode, RCode.refused.rawValue)
        XCTAssertNotEqual(r.flags & Header.qr, 0)
        XCTAssertGreaterThan(r.optStart, 0)
    }

    func testBadVersCarriesExtendedRCode() {
        var q = Msg.query("a.test", edns: 1232)
        q[q.count - 5] = 1
        let info = Msg.parseQuery(q)
        var out = [UInt8](repeating: 0, count: 512)
        let n = q.withUnsafeBytes { qb in
            out.withUnsafeMutableBytes { ResponseWriter.error(query: qb.baseAddress!, info: info, rcode: .badVers, into: $0.baseAddress!, maxUDPSize: 1232) }
        }
        let r = Msg.parseResponse(Array(out[..<n]))
        XCTAssertEqual(r.rcode, 0)
        XCTAssertEqual(r.extendedRCodeHigh, 1)   // 16 >> 4
    }
}

final class BuilderTests: XCTestCase {
    func testCompressesRepeatedSuffixes() {
        let m = Msg.build(flags: Header.qr) { b in
            b.question(Msg.name("www.example.test"), type: 1)
            b.nameRecord(.answer, owner: Msg.name("www.example.test"), type: RRType.cname, ttl: 60, target: Msg.name("web.Example.test"))
            b.record(.answer, owner: Msg.name("web.example.test"), type: 1, ttl: 60, rdata: [192, 0, 2, 1])
        }
        // Owner of the first answer is a bare pointer to the question (2 bytes).
        XCTAssertEqual(Array(m[34..<36]), [0xc0, 12])
        // The CNAME target "web" + pointer to "example.test" (offset 16).
        XCTAssertEqual(Array(m[46..<52]), [3, 0x77, 0x65, 0x62, 0xc0, 16])
        let r = Msg.parseResponse(m)
        XCTAssertNil(r.error)
        XCTAssertEqual(r.answerCount, 2)
        XCTAssertLessThan(m.count, 12 + 22 + 2 + 10 + 6 + 18 + 10 + 4 + 1)
    }

    func testOverflowIsReportedNotWritten() {
        var small = [UInt8](repeating: 0, count: 20)
        small.withUnsafeMutableBytes { raw in
            var b = MessageBuilder(buffer: raw.baseAddress!, capacity: raw.count, id: 1, flags: 0)
            b.question(Msg.name("a-rather-long-name.example.test"), type: 1)
            XCTAssertTrue(b.overflow)
            XCTAssertEqual(b.count, 12)
        }
    }
}

/// Every committed seed (and every past fuzzer finding added to Seeds/) is replayed through
/// each parser: no trap, and the verdict each file name promises.
final class SeedReplayTests: XCTestCase {
    func testReplaySeeds() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Seeds")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".bin") }.sorted()
        XCTAssertGreaterThanOrEqual(files.count, 17)
        let expected: [String: QueryVerdict] = [
            "query-a.bin": .query, "query-edns-do.bin": .query, "query-edns-v1.bin": .badVers,
            "query-two-opt.bin": .formErr, "query-qd2.bin": .formErr, "query-pointer-in-question.bin": .formErr,
            "query-truncated.bin": .formErr, "query-label-64.bin": .formErr, "query-name-256.bin": .formErr,
            "query-opcode-notify.bin": .notImp, "packet-qr-set.bin": .drop, "garbage-short.bin": .drop,
        ]
        for f in files {
            let bytes = [UInt8](try Data(contentsOf: dir.appendingPathComponent(f)))
            let q = Msg.parseQuery(bytes)
            let r = Msg.parseResponse(bytes)
            if let v = expected[f] { XCTAssertEqual(q.verdict, v, f) }
            if f.hasPrefix("response-") {
                let valid = ["response-compressed.bin", "response-nxdomain-soa.bin"].contains(f)
                XCTAssertEqual(r.error == nil, valid, f)
            }
            // Every prefix of every seed, too.
            for cut in 0..<bytes.count {
                _ = Msg.parseQuery(Array(bytes.prefix(cut)))
                _ = Msg.parseResponse(Array(bytes.prefix(cut)))
            }
        }
    }
}

func loadSeed(_ name: String) -> [UInt8] {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Seeds").appendingPathComponent(name)
    return [UInt8]((try? Data(contentsOf: url)) ?? Data())
}
