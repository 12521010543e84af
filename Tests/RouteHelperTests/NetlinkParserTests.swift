import NetAddress
@testable import RouteHelper
import XCTest

/// Decoding real kernel replies (see Seeds/README.md for how they were captured).
final class NetlinkParserTests: XCTestCase {
    func testIPv4DumpDecodesEveryRoute() throws {
        let messages = try NetlinkParser.messages(in: seed("dump-ipv4-0"))
        XCTAssertEqual(messages.count, 7)
        XCTAssertTrue(messages.allSatisfy { $0.header.type == NL.MessageType.newRoute && $0.header.flags & NL.Flag.multi != 0 })
        let routes = try messages.compactMap { try NetlinkParser.route($0) }
        XCTAssertEqual(routes.count, 7)

        // Table 1000 does not fit rtm_table (the kernel writes 252 there); RTA_TABLE wins.
        XCTAssertEqual(routes[0].destination, cidr("172.21.0.0/16"))
        XCTAssertEqual(routes[0].table, 1000)
        XCTAssertEqual(routes[0].protocolID, 201)
        XCTAssertEqual(routes[0].scope, RTScope.link)
        XCTAssertNil(routes[0].gateway)
        XCTAssertEqual(routes[0].outputInterface, 3)

        // The connected route of kbv0.
        XCTAssertEqual(routes[1].destination, cidr("10.77.0.0/24"))
        XCTAssertEqual(routes[1].protocolID, RTProt.kernel)
        XCTAssertEqual(routes[1].preferredSource, ip("10.77.0.1"))

        XCTAssertEqual(routes[2], kernelRoute("172.20.0.0/16", via: "10.77.0.2", proto: 201))
        XCTAssertEqual(routes[3], kernelRoute("172.21.0.0/16", via: "10.77.0.2", proto: RTProt.static))
        XCTAssertFalse(routes[3].isKubebridge)

        // Local-table entries: a local address and a broadcast route.
        XCTAssertEqual(routes[5].table, RTTable.local)
        XCTAssertEqual(routes[5].type, RTN.local)
        XCTAssertEqual(routes[5].destination, cidr("10.77.0.1/32"))
        XCTAssertEqual(routes[6].type, 3 /* RTN_BROADCAST */)
    }

    func testIPv6DumpDecodes() throws {
        let routes = try NetlinkParser.messages(in: seed("dump-ipv6-0")).compactMap { try NetlinkParser.route($0) }
        let ours = try XCTUnwrap(routes.first { $0.destination == cidr("fd00:20::/64") })
        XCTAssertEqual(ours.gateway, ip("fd00:77::2"))
        XCTAssertEqual(ours.protocolID, 201)
        XCTAssertEqual(ours.priority, 1024) // the kernel's default IPv6 metric
        XCTAssertTrue(routes.contains { $0.destination == cidr("fd00:77::/64") && $0.protocolID == RTProt.kernel })
    }

    func testDoneEndsTheDump() throws {
        for name in ["dump-ipv4-1", "dump-ipv6-1"] {
            let m = try NetlinkParser.messages(in: seed(name))
            XCTAssertEqual(m.count, 1)
            XCTAssertEqual(m[0].header.type, NL.MessageType.done)
            XCTAssertEqual(NetlinkParser.doneCode(m[0]), 0)
        }
    }

    func testErrorWithEchoedRequest() throws {
        let m = try NetlinkParser.messages(in: seed("error-eexist-0"))
        let e = try NetlinkParser.errorReply(m[0])
        XCTAssertEqual(e.errno, 17) // EEXIST
        XCTAssertNil(e.message)
        XCTAssertEqual(e.request.type, NL.MessageType.newRoute)
        XCTAssertEqual(e.request.flags, 0x0605)
    }

    func testErrorWithExtendedAck() throws {
        let m = try NetlinkParser.messages(in: seed("error-extack-badgw-0"))
        let e = try NetlinkParser.errorReply(m[0])
        XCTAssertEqual(e.errno, 101) // ENETUNREACH
        XCTAssertEqual(e.message, "Nexthop has invalid gateway")
        let text = RouteError.kernel(operation: "ip route add 172.30.0.0/16 via 10.99.99.99", errno: e.errno, message: e.message).description
        XCTAssertEqual(text, "ip route add 172.30.0.0/16 via 10.99.99.99: Nexthop has invalid gateway (Network is unreachable); "
                       + "the next hop is not on a directly connected subnet (or its interface is down)")
    }

    func testCappedAck() throws {
        let m = try NetlinkParser.messages(in: seed("ack-0"))
        XCTAssertEqual(m[0].header.flags & NL.Flag.capped, NL.Flag.capped)
        XCTAssertEqual(try NetlinkParser.errorReply(m[0]).errno, 0)
    }

    func testMalformedSeedsGiveTypedErrors() throws {
        let expectations: [String: NetlinkParseError] = [
            "malformed-length-overflow": .badLength(what: "message at offset 0", length: Int(UInt32.max)),
            "malformed-length-short": .badLength(what: "message at offset 0", length: 8),
            "malformed-trailing-bytes": .truncated(what: "nlmsghdr", needed: 4, available: 3),
        ]
        for (name, expected) in expectations {
            XCTAssertThrowsError(try NetlinkParser.messages(in: seed(name)), name) { error in
                XCTAssertEqual(error as? NetlinkParseError, expected, name)
            }
        }
        // Well-framed messages with broken contents fail when decoded.
        let overrun = try NetlinkParser.messages(in: seed("malformed-attr-overrun"))
        XCTAssertThrowsError(try NetlinkParser.route(overrun[0])) {
            XCTAssertEqual($0 as? NetlinkParseError, .badAttribute(what: "route", type: 1, length: 200))
        }
        let dstSize = try NetlinkParser.messages(in: seed("malformed-dst-size"))
        XCTAssertThrowsError(try NetlinkParser.route(dstSize[0])) {
            XCTAssertEqual($0 as? NetlinkParseError, .badAttribute(what: "route", type: 5, length: 4))
        }
        let short = try NetlinkParser.messages(in: seed("malformed-rtmsg-truncated"))
        XCTAssertThrowsError(try NetlinkParser.route(short[0])) {
            XCTAssertEqual($0 as? NetlinkParseError, .truncated(what: "rtmsg", needed: 1, available: 0))
        }
        let ack = try NetlinkParser.messages(in: seed("malformed-extack-overrun"))
        XCTAssertThrowsError(try NetlinkParser.errorReply(ack[0])) {
            XCTAssertEqual($0 as? NetlinkParseError, .badAttribute(what: "extended ack", type: 1, length: 64))
        }
    }

    func testCursorKeepsFirstError() {
        var c = ByteCursor([1, 2, 3][...])
        XCTAssertEqual(c.u16("first"), 0x0201)
        XCTAssertEqual(c.u32("second"), 0) // past the end
        XCTAssertEqual(c.u8("third"), 0)   // would succeed, but the cursor already failed
        XCTAssertEqual(c.error, .truncated(what: "second", needed: 4, available: 1))
    }
}

/// The request/ack loop's bookkeeping, fed with real replies.
final class ReplyCollectorTests: XCTestCase {
    // ack-0.bin answers sequence 0x6b026bf1 on port 0x10bf.
    let seq: UInt32 = 0x6b02_6bf1
    let port: UInt32 = 0x10bf

    func testMatchingAckFinishes() throws {
        var c = ReplyCollector(sequence: seq, portID: port, isDump: false)
        let m = try NetlinkParser.messages(in: seed("ack-0"))[0]
        XCTAssertEqual(try c.consume(m), .finished)
        XCTAssertEqual(c.ignored, 0)
    }

    func testStaleSequenceIsIgnored() throws {
        var c = ReplyCollector(sequence: seq &+ 1, portID: port, isDump: false)
        let m = try NetlinkParser.messages(in: seed("ack-0"))[0]
        XCTAssertEqual(try c.consume(m), .needMore)
        XCTAssertEqual(c.ignored, 1)
    }

    func testOtherPortIsIgnored() throws {
        var c = ReplyCollector(sequence: seq, portID: port &+ 1, isDump: false)
        let m = try NetlinkParser.messages(in: seed("ack-0"))[0]
        XCTAssertEqual(try c.consume(m), .needMore)
        XCTAssertEqual(c.ignored, 1)
    }

    func testKernelErrorIsReported() throws {
        let m = try NetlinkParser.messages(in: seed("error-extack-badgw-0"))[0]
        var c = ReplyCollector(sequence: m.header.sequence, portID: m.header.portID, isDump: false)
        XCTAssertEqual(try c.consume(m), .failed(errno: 101, message: "Nexthop has invalid gateway"))
    }

    func testDumpCollectsUntilDone() throws {
        let parts = try NetlinkParser.messages(in: seed("dump-ipv4-0"))
        let done = try NetlinkParser.messages(in: seed("dump-ipv4-1"))[0]
        var c = ReplyCollector(sequence: done.header.sequence, portID: done.header.portID, isDump: true)
        for p in parts { XCTAssertEqual(try c.consume(p), .needMore) }
        XCTAssertEqual(try c.consume(done), .finished)
        XCTAssertEqual(c.collected.count, 7)
        XCTAssertFalse(c.interrupted)
    }

    func testInterruptedDumpIsFlagged() throws {
        var m = try NetlinkParser.messages(in: seed("dump-ipv4-0"))[0]
        m.header.flags |= NL.Flag.dumpInterrupted
        var c = ReplyCollector(sequence: m.header.sequence, portID: m.header.portID, isDump: true)
        _ = try c.consume(m)
        XCTAssertTrue(c.interrupted)
    }
}

/// Replays every seed, then every truncation and single-byte corruption of it, through the
/// parser: each must decode or throw `NetlinkParseError`, never crash or hang. (The same
/// entry point is what a libFuzzer target would call.)
final class NetlinkSeedReplayTests: XCTestCase {
    /// Decodes everything a datagram holds, the way the socket layer does.
    func decodeAll(_ bytes: [UInt8]) -> Result<Int, NetlinkParseError> {
        do {
            var decoded = 0
            for m in try NetlinkParser.messages(in: bytes) {
                switch m.header.type {
                case NL.MessageType.error: _ = try NetlinkParser.errorReply(m)
                case NL.MessageType.done: _ = NetlinkParser.doneCode(m)
                default: _ = try NetlinkParser.route(m)
                }
                decoded += 1
            }
            return .success(decoded)
        } catch {
            return .failure(error)
        }
    }

    func testReplayAllSeedsAndMutations() throws {
        let names = allSeedNames()
        XCTAssertGreaterThanOrEqual(names.count, 14, "seed corpus missing: \(names)")
        var successes = 0, failures = 0
        for name in names {
            let bytes = try seed(name)
            let whole = decodeAll(bytes)
            if name.hasPrefix("malformed-") {
                if case .success = whole { XCTFail("\(name) decoded without error") }
            } else {
                if case .failure(let e) = whole { XCTFail("\(name): \(e)") }
            }
            for cut in 0..<bytes.count {
                switch decodeAll(Array(bytes[0..<cut])) { case .success: successes += 1; case .failure: failures += 1 }
            }
            for i in 0..<bytes.count {
                for v: UInt8 in [0x00, 0xff, bytes[i] ^ 0x80] {
                    var m = bytes
                    m[i] = v
                    switch decodeAll(m) { case .success: successes += 1; case .failure: failures += 1 }
                }
            }
        }
        // Both outcomes must occur: mutations of length fields fail, payload bytes often do not.
        XCTAssertGreaterThan(successes, 0)
        XCTAssertGreaterThan(failures, 0)
    }
}
