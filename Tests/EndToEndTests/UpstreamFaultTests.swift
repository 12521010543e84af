import XCTest

/// Silent, failing and spoofing upstreams: bounded SERVFAIL, failover, and no
/// off-path reply (wrong ID, wrong source port, wrong question) ever reaches a client.
final class UpstreamFaultTests: EndToEndTestCase {
    func testSilentUpstreamGivesSERVFAILWithinTheBound() throws {
        let silent = try startFake(.silent)
        let kb = try startKubebridge(upstreams: [silent], Self.timeouts(upstreamMs: 700, queryMs: 2500))
        let result = try dig(kb, "silent.example.test", timeoutSeconds: 6)
        XCTAssertEqual(result.status, "SERVFAIL", "\(result)")
        XCTAssertGreaterThan(result.elapsed, 0.5, "SERVFAIL came before the 700 ms upstream timeout could expire: \(result)")
        XCTAssertLessThan(result.elapsed, 6, "\(result)")
        XCTAssertGreaterThanOrEqual(try silent.state().udp, 1)
    }

    func testQueryTimeoutBoundsTheTotalWait() throws {
        let first = try startFake(.silent)
        let second = try startFake(.silent, address: "127.0.0.6")
        // Two 1000 ms attempts would take 2 s; the 1200 ms total budget must cut the second short.
        let kb = try startKubebridge(upstreams: [first, second], Self.timeouts(upstreamMs: 1000, queryMs: 1200))
        let query = QueryBuilder(id: 0x3737, name: "Budget.Example.Test.")
        let start = Date()
        let response = try XCTUnwrap(rawUDP(kb, query.bytes, timeout: 4), "no SERVFAIL within 4 s")
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertEqual(response.rcode, DNSRcode.servFail, "\(response)")
        XCTAssertEqual(response.id, 0x3737)
        XCTAssertEqual(response.questionBytes, Array(query.bytes[12...]), "SERVFAIL must echo the question: \(response)")
        XCTAssertGreaterThan(elapsed, 0.9, "SERVFAIL before the first attempt timed out")
        XCTAssertLessThan(elapsed, 1.8, "--query-timeout 1200 did not bound the total wait")
        XCTAssertEqual(try first.state().total + second.state().total, 2, "both upstreams should have been tried once")
    }

    func testSecondUpstreamAnswersWhenTheFirstIsSilent() throws {
        let silent = try startFake(.silent)
        let ok = try startFake(.ok, address: "127.0.0.6")
        let kb = try startKubebridge(upstreams: [silent, ok], Self.timeouts(upstreamMs: 300, queryMs: 3000))
        let result = try dig(kb, "failover.example.test", timeoutSeconds: 5)
        XCTAssertEqual(result.status, "NOERROR", "\(result)")
        XCTAssertEqual(result.addresses, ["192.0.2.1"], "\(result)")
        XCTAssertEqual(try ok.state().queries.map(\.qname), ["failover.example.test."])
    }

    func testServfailFromUpstreamReachesClientAsSERVFAIL() throws {
        let servfail = try startFake(.servfail)
        let kb = try startKubebridge(upstreams: [servfail], Self.shortTimeouts)
        let result = try dig(kb, "broken.example.test", timeoutSeconds: 4)
        XCTAssertEqual(result.status, "SERVFAIL", "\(result)")
        XCTAssertLessThan(result.elapsed, 4, "\(result)")
    }

    /// The spoof alone: the client gets SERVFAIL (or nothing), never 6.6.6.6.
    private func assertSpoofRejected(_ mode: FakeDNS.Mode, file: StaticString = #filePath, line: UInt = #line) throws {
        let fake = try startFake(mode)
        let kb = try startKubebridge(upstreams: [fake], Self.shortTimeouts)
        let result = try dig(kb, "spoof-\(mode.rawValue).example.test", timeoutSeconds: 4)
        XCTAssertFalse(result.output.contains(FakeDNS.spoofedAddress), "spoofed data reached the client: \(result)", file: file, line: line)
        XCTAssertTrue(result.status == "SERVFAIL" || !result.gotResponse, "expected SERVFAIL or no answer: \(result)", file: file, line: line)
        XCTAssertGreaterThanOrEqual(try fake.state().udp, 1, "the fake upstream was never queried", file: file, line: line)
        // Raw as well, checking the answer section rather than dig's text.
        let raw = try rawUDP(kb, QueryBuilder(id: 0x3131, name: "raw-spoof-\(mode.rawValue).example.test.").bytes, timeout: 3)
        XCTAssertFalse(raw?.addresses.contains(FakeDNS.spoofedAddress) ?? false, "spoofed data reached the client: \(raw!)", file: file, line: line)
    }

    func testReplyWithWrongIDIsIgnored() throws { try assertSpoofRejected(.wrongID) }
    func testReplyFromWrongPortIsIgnored() throws { try assertSpoofRejected(.wrongPort) }
    func testReplyWithWrongQuestionIsIgnored() throws { try assertSpoofRejected(.wrongQuestion) }

    /// A spoof followed 50 ms later by the genuine reply: the genuine one wins.
    func testGenuineReplyAfterASpoofIsStillAccepted() throws {
        for mode in [FakeDNS.Mode.wrongID, .wrongPort, .wrongQuestion] {
            let fake = try startFake(mode, thenOK: true)
            let kb = try startKubebridge(upstreams: [fake], Self.timeouts(upstreamMs: 1000, queryMs: 2000))
            let result = try dig(kb, "then-ok.example.test", timeoutSeconds: 4)
            XCTAssertEqual(result.status, "NOERROR", "\(mode.rawValue): \(result)")
            XCTAssertEqual(result.addresses, ["192.0.2.1"], "\(mode.rawValue): \(result)")
            XCTAssertFalse(result.output.contains(FakeDNS.spoofedAddress), "\(mode.rawValue): \(result)")
        }
    }

    func testUpstreamQueriesUseRandomIDsAndSourcePorts() throws {
        let fake = try startFake(.ok)
        let kb = try startKubebridge(upstreams: [fake])
        let clientID: UInt16 = 0x0101
        for i in 0..<8 {
            let name = "random-\(i).example.test."
            let response = try XCTUnwrap(rawUDP(kb, QueryBuilder(id: clientID, name: name).bytes), "no reply to \(name)")
            XCTAssertEqual(response.id, clientID, "the client must get its own ID back: \(response)")
            XCTAssertEqual(response.questionName, name)
        }
        let queries = try fake.state().queries
        XCTAssertEqual(Set(queries.map(\.qname)).count, 8, "\(queries)")
        let ids = Set(queries.map(\.id))
        XCTAssertGreaterThanOrEqual(ids.count, 7, "upstream IDs look predictable: \(queries.map(\.id))")
        XCTAssertFalse(queries.allSatisfy { $0.id == Int(clientID) }, "the client's ID is passed upstream unchanged")
        let ports = Set(queries.map(\.sport))
        XCTAssertGreaterThan(ports.count, 1, "every upstream query came from the same source port \(ports)")
    }
}
