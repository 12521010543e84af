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
    func testReplyFromWrongAddressIsIgnored() throws { try assertSpoofRejected(.wrongAddress) }

    /// A spoof followed 50 ms later by the genuine reply: the genuine one wins.
    func testGenuineReplyAfterASpoofIsStillAccepted() throws {
        for mode in [FakeDNS.Mode.wrongID, .wrongPort, .wrongAddress, .wrongQuestion] {
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

    /// One raw UDP exchange, timed.
    private func timed(_ kb: KubebridgeProcess, _ name: String, id: UInt16, timeout: TimeInterval = 5) throws
        -> (response: DNSResponse?, elapsed: TimeInterval) {
        let start = Date()
        let response = try rawUDP(kb, QueryBuilder(id: id, name: name).bytes, timeout: timeout)
        return (response, Date().timeIntervalSince(start))
    }

    /// kubebridge whose cluster zone has the given servers, in this order (cluster zones
    /// keep the configured order, so the first one is always asked first).
    private func startKubebridge(cluster: [FakeDNS], upstreamMs: Int = 2000, queryMs: Int = 4000) throws -> KubebridgeProcess {
        try startKubebridge(["--cluster-zone", "cluster.local", "--upstream", "127.0.0.9:9"]
                            + cluster.flatMap { ["--cluster-dns", $0.endpoint] }
                            + Self.timeouts(upstreamMs: upstreamMs, queryMs: queryMs))
    }

    /// REFUSED is a failure of that server: with no other server the client gets SERVFAIL at
    /// once (no waiting for a timeout); with another one, its answer.
    func testRefusedFromUpstreamGivesSERVFAILAtOnceOrTheNextServersAnswer() throws {
        let refused = try startFake(.refused)
        let alone = try startKubebridge(cluster: [refused])
        let (failed, elapsed) = try timed(alone, "web.refused.svc.cluster.local.", id: 0x5101)
        XCTAssertEqual(try XCTUnwrap(failed, "no answer").rcode, DNSRcode.servFail, "\(failed!)")
        XCTAssertLessThan(elapsed, 1.5, "REFUSED must not wait for the 2 s upstream timeout")

        let ok = try startFake(.ok, address: "127.0.0.6")
        let both = try startKubebridge(cluster: [refused, ok])
        let answer = try XCTUnwrap(rawUDP(both, QueryBuilder(id: 0x5102, name: "web.next.svc.cluster.local.").bytes), "no answer")
        XCTAssertEqual(answer.rcode, DNSRcode.noError, "\(answer)")
        XCTAssertEqual(answer.addresses, ["192.0.2.1"], "\(answer)")
        XCTAssertEqual(try refused.state().count("web.next.svc.cluster.local."), 1)
        XCTAssertEqual(try ok.state().count("web.next.svc.cluster.local."), 1)
    }

    /// A server that takes 1.5 s to answer, with a 1 s upstream timeout and no other server:
    /// the query is retransmitted with the same ID and the late answer to the first copy is
    /// what the client gets, at about 1.5 s, not a SERVFAIL at the 4 s query timeout.
    func testSlowUpstreamsLateAnswerIsTaken() throws {
        let slow = try startFake(.ok, extra: ["--delay", "1500"])
        let kb = try startKubebridge(upstreams: [slow], Self.timeouts(upstreamMs: 1000, queryMs: 4000))
        let (response, elapsed) = try timed(kb, "Slow.Example.Test.", id: 0x5201)
        let answer = try XCTUnwrap(response, "no answer within 5 s")
        XCTAssertEqual(answer.rcode, DNSRcode.noError, "\(answer)")
        XCTAssertEqual(answer.addresses, ["192.0.2.1"], "the answer to the first copy: \(answer)")
        XCTAssertEqual(answer.id, 0x5201)
        XCTAssertEqual(answer.questionName, "Slow.Example.Test.")
        XCTAssertGreaterThan(elapsed, 1.3, "answered before the slow server could have")
        XCTAssertLessThan(elapsed, 2.5, "the late answer was not taken")
        let queries = try slow.state().queries
        XCTAssertEqual(queries.count, 2, "one retransmission after the 1 s timeout: \(queries)")
        XCTAssertEqual(Set(queries.map(\.id)).count, 1, "a retransmission repeats the ID: \(queries)")
        XCTAssertEqual(Set(queries.map(\.sport)).count, 1, "and the source port: \(queries)")
    }

    /// TC=1 over UDP and over TCP: one TCP try, then SERVFAIL at once, for UDP and TCP
    /// clients alike; never a loop.
    func testTCLoopEndsInSERVFAILAfterOneTCPTry() throws {
        let loop = try startFake(.tcAlways)
        let kb = try startKubebridge(cluster: [loop])
        let (response, elapsed) = try timed(kb, "web.loop.svc.cluster.local.", id: 0x5301)
        XCTAssertEqual(try XCTUnwrap(response, "no answer").rcode, DNSRcode.servFail, "\(response!)")
        XCTAssertLessThan(elapsed, 1.5, "a TC loop must not wait for the 2 s timeout")
        let state = try loop.state()
        XCTAssertEqual(state.udp, 1, "\(state.queries)")
        XCTAssertEqual(state.tcp, 1, "exactly one TCP try: \(state.queries)")
        let tcp = try dig(kb, "web.loop2.svc.cluster.local", options: ["+tcp"], timeoutSeconds: 4)
        XCTAssertEqual(tcp.status, "SERVFAIL", "\(tcp)")
        XCTAssertEqual(try loop.state().total, 4)
    }

    /// The TCP retry after TC=1 breaks: the server closes the connection half-way through the
    /// answer (tcp-cut), or sends a message cut short with a matching length (tcp-garbled).
    /// Alone: SERVFAIL at once, nothing half-read reaches the client or the cache. With a second
    /// cluster server: its answer.
    func testBrokenTCPAnswersFailOverAndNeverReachTheClient() throws {
        for mode in [FakeDNS.Mode.tcpCut, .tcpGarbled] {
            let broken = try startFake(mode)
            let alone = try startKubebridge(cluster: [broken])
            let name = "web.\(mode.rawValue).svc.cluster.local."
            let (response, elapsed) = try timed(alone, name, id: 0x5401)
            let failed = try XCTUnwrap(response, "\(mode.rawValue): no answer")
            XCTAssertEqual(failed.rcode, DNSRcode.servFail, "\(mode.rawValue): \(failed)")
            XCTAssertEqual(failed.addresses, [], "\(mode.rawValue): \(failed)")
            XCTAssertLessThan(elapsed, 1.5, "\(mode.rawValue): a broken TCP answer must not wait for the timeout")
            XCTAssertEqual(try broken.state().tcp, 1, mode.rawValue)

            let ok = try startFake(.ok, address: "127.0.0.6")
            let both = try startKubebridge(cluster: [broken, ok])
            let other = "api.\(mode.rawValue).svc.cluster.local."
            let answer = try XCTUnwrap(rawUDP(both, QueryBuilder(id: 0x5402, name: other).bytes), "\(mode.rawValue): no answer")
            XCTAssertEqual(answer.rcode, DNSRcode.noError, "\(mode.rawValue): \(answer)")
            XCTAssertEqual(answer.addresses, ["192.0.2.1"], "\(mode.rawValue): the second server's answer: \(answer)")
            XCTAssertEqual(try broken.state().count(other), 2, "\(mode.rawValue): UDP, then TCP")
            // Now cached: asked again, nobody upstream is bothered.
            let again = try XCTUnwrap(rawUDP(both, QueryBuilder(id: 0x5403, name: other).bytes))
            XCTAssertEqual(again.addresses, ["192.0.2.1"], "\(mode.rawValue): \(again)")
            XCTAssertEqual(try broken.state().count(other) + ok.state().count(other), 3, mode.rawValue)
        }
    }

    /// Nothing listens on the first cluster server's port: the kernel answers with ICMP port
    /// unreachable and kubebridge fails that attempt at once (IP_RECVERR) instead of waiting for
    /// the 2 s upstream timeout. Alone: SERVFAIL at once; with a second server: its answer at once.
    func testICMPPortUnreachableFailsOverWithoutWaiting() throws {
        let closedPort = try E2E.freePort(host: "127.0.0.7")
        let closed = ["--cluster-dns", "127.0.0.7:\(closedPort)"]
        let alone = try startKubebridge(["--cluster-zone", "cluster.local", "--upstream", "127.0.0.9:9"] + closed
                                        + Self.timeouts(upstreamMs: 2000, queryMs: 4000))
        let (failed, failedIn) = try timed(alone, "web.closed.svc.cluster.local.", id: 0x5501)
        XCTAssertEqual(try XCTUnwrap(failed, "no answer").rcode, DNSRcode.servFail, "\(failed!)")
        XCTAssertLessThan(failedIn, 1.0, "a refused port must not cost the 2 s upstream timeout")
        // A burst: ICMP errors arrive while more queries are being sent on the same socket, so a
        // send reports (and clears) the socket error before the loop reads the error queue. Every
        // query is still answered, and afterwards the worker is idle, not spinning on EPOLLERR.
        let sock = try RawDNS.UDPSocket(host: alone.host, port: alone.port)
        for i in 0..<40 { try sock.send(QueryBuilder(id: UInt16(0x5600 + i), name: "burst\(i).closed.svc.cluster.local.").bytes) }
        var answered = 0
        while answered < 40, let bytes = try sock.receive(timeout: 3) {
            if try DNSResponse(bytes).rcode == DNSRcode.servFail { answered += 1 }
        }
        XCTAssertEqual(answered, 40, "every query of the burst gets its SERVFAIL")
        let before = try XCTUnwrap(E2E.cpuTicks(pid: alone.pid))
        Thread.sleep(forTimeInterval: 1)
        let spent = try XCTUnwrap(E2E.cpuTicks(pid: alone.pid)) - before
        XCTAssertLessThan(spent, 20, "kubebridge used \(spent) ticks of CPU in 1 s while idle: a wake-up loop")

        let ok = try startFake(.ok, address: "127.0.0.6")
        let both = try startKubebridge(["--cluster-zone", "cluster.local", "--upstream", "127.0.0.9:9"] + closed
                                       + ["--cluster-dns", ok.endpoint] + Self.timeouts(upstreamMs: 2000, queryMs: 4000))
        let (answer, answeredIn) = try timed(both, "web.next.svc.cluster.local.", id: 0x5502)
        XCTAssertEqual(answer?.addresses, ["192.0.2.1"], "\(answer.map { "\($0)" } ?? "no answer")")
        XCTAssertLessThan(answeredIn, 1.0, "failover after ICMP unreachable should not wait for the timeout")
    }
}
