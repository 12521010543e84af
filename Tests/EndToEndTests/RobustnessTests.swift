import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Clients and signals that misbehave at awkward moments; the server must keep serving.
final class RobustnessTests: EndToEndTestCase {
    func testClientsVanishingMidQueryDoNotHurt() throws {
        let silent = try startFake(.silent)
        let ok = try startFake(.ok, address: "127.0.0.6")
        let kb = try startKubebridge(["--cluster-dns", "127.0.0.9:9", "--upstream", silent.endpoint,
                                      "--forward", "ok.test=\(ok.endpoint)"] + Self.shortTimeouts)
        // TCP clients that close before their (slow) answer, or mid-message.
        for i in 0..<5 {
            let c = try RawDNS.TCPConnection(host: kb.host, port: kb.port)
            try c.send([QueryBuilder(id: UInt16(0x6100 + i), name: "gone-\(i).example.test.").bytes])
        }
        let partial = try RawDNS.TCPConnection(host: kb.host, port: kb.port)
        try partial.sendRaw([0x00, 0x40, 0x12, 0x34, 0x01])   // announces 64 bytes, sends 3
        let zeroLength = try RawDNS.TCPConnection(host: kb.host, port: kb.port)
        try zeroLength.sendRaw([0x00, 0x00])
        // UDP clients whose socket is closed before the SERVFAIL is sent.
        for i in 0..<5 {
            let s = try RawDNS.UDPSocket(host: kb.host, port: kb.port)
            try s.send(QueryBuilder(id: UInt16(0x6200 + i), name: "gone-udp-\(i).example.test.").bytes)
        }
        Thread.sleep(forTimeInterval: 1.5)   // past the 1200 ms query budget
        let result = try dig(kb, "alive.ok.test")
        XCTAssertEqual(result.addresses, ["192.0.2.1"], "server unwell after clients vanished: \(result)")
        XCTAssertTrue(kb.isRunning)
    }

    func testBinaryLabelIsForwardedAndEchoedExactly() throws {
        let fake = try startFake(.ok)
        let kb = try startKubebridge(upstreams: [fake])
        // One label "A.b" (a literal dot) followed by "Example.test": 3A.b7Example4test0
        let question: [UInt8] = [3, 0x41, 0x2E, 0x62, 7] + Array("Example".utf8) + [4] + Array("test".utf8) + [0, 0, 1, 0, 1]
        let query = QueryBuilder(id: 0x6301, name: "x.").header() + question
        let response = try XCTUnwrap(rawUDP(kb, query), "no reply to a question with a dot inside a label")
        XCTAssertEqual(response.id, 0x6301)
        XCTAssertEqual(response.questionBytes, question, "\(response)")
        XCTAssertEqual(response.rcode, DNSRcode.noError, "\(response)")
        XCTAssertEqual(try fake.state().queries.map(\.qname), ["a.b.example.test."])   // fakedns joins labels with dots
    }

    func testTwoOPTRecordsAreFORMERR() throws {
        let fake = try startFake(.ok)
        let kb = try startKubebridge(upstreams: [fake])
        var query = QueryBuilder(id: 0x6401, name: "two-opt.example.test.")
        query.edns = (1232, 0, false)
        var bytes = query.bytes
        bytes += [0] + be16(DNSType.opt) + be16(1232) + [0, 0, 0, 0] + be16(0)
        bytes[11] = 2   // ARCOUNT = 2
        let response = try XCTUnwrap(rawUDP(kb, bytes), "no reply to a query with two OPT records")
        XCTAssertEqual(response.rcode, DNSRcode.formErr, "RFC 6891 6.1.1: more than one OPT is FORMERR: \(response)")
        XCTAssertEqual(try fake.state().total, 0)
    }

    func testSIGTERMWithQueriesInFlightExitsZero() throws {
        let silent = try startFake(.silent)
        let kb = try startKubebridge(upstreams: [silent])   // default 4 s budget: queries stay pending
        let sock = try RawDNS.UDPSocket(host: kb.host, port: kb.port)
        for i in 0..<10 { try sock.send(QueryBuilder(id: UInt16(0x6500 + i), name: "pending-\(i).example.test.").bytes) }
        let tcp = try RawDNS.TCPConnection(host: kb.host, port: kb.port)
        try tcp.send([QueryBuilder(id: 0x6510, name: "pending-tcp.example.test.").bytes])
        Thread.sleep(forTimeInterval: 0.2)
        let start = Date()
        let exit = kb.stop()
        XCTAssertTrue(exit.isCleanExit, "SIGTERM with queries in flight: \(exit); stderr:\n\(E2E.tail(kb.stderr))")
        XCTAssertLessThan(Date().timeIntervalSince(start), 3, "shutdown waited for pending queries")
    }

    func testSIGHUPDoesNotStopTheServer() throws {
        let fake = try startFake(.ok)
        let kb = try startKubebridge(upstreams: [fake])
        kill(kb.pid, SIGHUP)
        Thread.sleep(forTimeInterval: 0.2)
        XCTAssertTrue(kb.isRunning, "SIGHUP stopped the server; stderr:\n\(E2E.tail(kb.stderr))")
        XCTAssertEqual(try dig(kb, "after-hup.example.test").addresses, ["192.0.2.1"])
    }
}
