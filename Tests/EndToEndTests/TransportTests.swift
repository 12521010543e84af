import XCTest

/// UDP and TCP listeners, pipelined and fragmented TCP, and the IPv6 listener.
final class TransportTests: EndToEndTestCase {
    func testUDPAndTCPGiveTheSameAnswers() throws {
        let kb = try startKubebridgeWithKnots()
        for (name, address) in [("web.prod.svc.cluster.local", "172.21.0.10"), ("www.example.test", "198.51.100.10")] {
            let udp = try dig(kb, name)
            assertAnswer(udp, "A", [address])
            XCTAssertEqual(udp.transport, "UDP", "\(udp)")
            let tcp = try dig(kb, name, options: ["+tcp"])
            assertAnswer(tcp, "A", [address])
            XCTAssertEqual(tcp.transport, "TCP", "\(tcp)")
        }
        // kdig over TCP as a second, independent client implementation.
        let kdig = try Dig.kdig("kubernetes.default.svc.cluster.local", server: kb.host, port: kb.port, options: ["+tcp"])
        assertAnswer(kdig, "A", ["172.21.0.1"])
    }

    func testPipelinedQueriesOnOneTCPConnection() throws {
        let kb = try startKubebridgeWithKnots()
        let expected: [(UInt16, String, UInt16, String)] = [
            (0x0101, "web.prod.svc.cluster.local.", DNSType.a, "172.21.0.10"),
            (0x0202, "www.example.test.", DNSType.a, "198.51.100.10"),
            (0x0303, "kubernetes.default.svc.cluster.local.", DNSType.a, "172.21.0.1"),
            (0x0404, "notcluster.local.", DNSType.a, "198.51.100.7"),
            (0x0505, "5.3.20.172.in-addr.arpa.", DNSType.ptr, "172-20-3-5.prod.pod.cluster.local."),
            (0x0606, "App.Corp.Test.", DNSType.a, "10.1.2.3"),
        ]
        let connection = try RawDNS.TCPConnection(host: kb.host, port: kb.port)
        try connection.send(expected.map { QueryBuilder(id: $0.0, name: $0.1, type: $0.2).bytes })
        var responses: [UInt16: DNSResponse] = [:]
        for _ in expected {
            guard let bytes = try connection.receive(timeout: 5) else { break }
            let response = try DNSResponse(bytes)
            XCTAssertNil(responses[response.id], "duplicate response for id \(response.id)")
            responses[response.id] = response
        }
        XCTAssertEqual(responses.count, expected.count, "pipelined queries answered: \(responses.values.map(\.description))")
        for (id, name, _, rdata) in expected {
            guard let response = responses[id] else { XCTFail("no response to \(name) (id \(id))"); continue }
            XCTAssertEqual(response.questionName, name, "\(response)")
            XCTAssertEqual(response.rcode, DNSRcode.noError, "\(response)")
            XCTAssertEqual(response.answers.map(\.rdataText), [rdata], "\(response)")
        }
        // The connection stays usable after the pipelined batch.
        try connection.send([QueryBuilder(id: 0x0707, name: "web.prod.svc.cluster.local.").bytes])
        let again = try DNSResponse(XCTUnwrap(connection.receive(timeout: 5), "no answer to a query after the pipelined batch"))
        XCTAssertEqual(again.id, 0x0707)
        XCTAssertEqual(again.addresses, ["172.21.0.10"], "\(again)")
    }

    func testTCPQuerySplitAcrossSegments() throws {
        let kb = try startKubebridgeWithKnots()
        let connection = try RawDNS.TCPConnection(host: kb.host, port: kb.port)
        let framed = RawDNS.TCPConnection.frame(QueryBuilder(id: 0x5151, name: "web.prod.svc.cluster.local.").bytes)
        // First length byte alone, then the second with half the message, then the rest.
        let half = 2 + (framed.count - 2) / 2
        for chunk in [framed[0..<1], framed[1..<half], framed[half...]] {
            try connection.sendRaw(Array(chunk))
            Thread.sleep(forTimeInterval: 0.05)
        }
        let response = try DNSResponse(XCTUnwrap(connection.receive(timeout: 5), "no answer to a fragmented TCP query"))
        XCTAssertEqual(response.id, 0x5151)
        XCTAssertEqual(response.addresses, ["172.21.0.10"], "\(response)")
    }

    func testIdleTCPConnectionIsClosed() throws {
        let unit = ProcessInfo.processInfo.environment["KUBEBRIDGE_E2E_MS_SUFFIX"] ?? ""
        let kb = try startKubebridgeWithKnots(["--tcp-idle-timeout", "400\(unit)"])
        let active = try RawDNS.TCPConnection(host: kb.host, port: kb.port)
        try active.send([QueryBuilder(id: 0x5252, name: "web.prod.svc.cluster.local.").bytes])
        XCTAssertNotNil(try active.receive(timeout: 5), "no answer on a fresh TCP connection")
        let idle = try RawDNS.TCPConnection(host: kb.host, port: kb.port)
        let start = Date()
        XCTAssertTrue(idle.isClosedByPeer(timeout: 3), "an idle TCP connection stayed open with --tcp-idle-timeout 400")
        XCTAssertGreaterThan(Date().timeIntervalSince(start), 0.2, "idle connection closed far too early")
        // The listener keeps accepting after closing idle connections.
        assertAnswer(try dig(kb, "web.prod.svc.cluster.local", options: ["+tcp"]), "A", ["172.21.0.10"])
    }

    func testIPv6Listener() throws {
        let kb = try startKubebridgeWithKnots(ipv6: true)
        let port = try XCTUnwrap(kb.ipv6Port)
        let udp = try Dig.query("web.prod.svc.cluster.local", server: "::1", port: port)
        assertAnswer(udp, "A", ["172.21.0.10"])
        XCTAssertEqual(udp.transport, "UDP", "\(udp)")
        let tcp = try Dig.query("www.example.test", server: "::1", port: port, options: ["+tcp"])
        assertAnswer(tcp, "A", ["198.51.100.10"])
        XCTAssertEqual(tcp.transport, "TCP", "\(tcp)")
        let raw = try XCTUnwrap(RawDNS.udp(QueryBuilder(id: 0x6666, name: "Dual.Prod.Svc.Cluster.Local.", type: DNSType.aaaa).bytes,
                                           host: "::1", port: port))
        let response = try DNSResponse(raw)
        XCTAssertEqual(response.id, 0x6666)
        XCTAssertEqual(response.questionName, "Dual.Prod.Svc.Cluster.Local.")
        XCTAssertEqual(response.addresses, ["fd00:21::30"], "\(response)")
        // The IPv4 listener keeps working next to it.
        assertAnswer(try dig(kb, "web.prod.svc.cluster.local"), "A", ["172.21.0.10"])
    }

    /// 100 distinct queries in flight at once on one socket, plus 20 identical ones
    /// with different IDs and case: each answered once, with its own ID and question.
    func testBurstOfConcurrentUDPQueries() throws {
        let fake = try startFake(.ok)
        let kb = try startKubebridge(upstreams: [fake])
        let sock = try RawDNS.UDPSocket(host: kb.host, port: kb.port)
        var expected: [UInt16: String] = [:]
        for i in 0..<100 {
            let id = UInt16(0x1000 + i)
            expected[id] = "burst-\(i).example.test."
        }
        for i in 0..<20 {
            let id = UInt16(0x2000 + i)
            expected[id] = i % 2 == 0 ? "same.example.test." : "SAME.Example.Test."
        }
        for (id, name) in expected.sorted(by: { $0.key < $1.key }) {
            try sock.send(QueryBuilder(id: id, name: name).bytes)
        }
        var answered: [UInt16: DNSResponse] = [:]
        let deadline = Date().addingTimeInterval(5)
        while answered.count < expected.count, deadline.timeIntervalSinceNow > 0 {
            guard let bytes = try sock.receive(timeout: deadline.timeIntervalSinceNow) else { break }
            let response = try DNSResponse(bytes)
            XCTAssertNil(answered[response.id], "two replies for id \(response.id)")
            answered[response.id] = response
        }
        XCTAssertEqual(answered.count, expected.count, "answered \(answered.count) of \(expected.count) concurrent queries")
        for (id, name) in expected {
            guard let response = answered[id] else { continue }
            XCTAssertEqual(response.questionName, name, "id \(id): \(response)")
            XCTAssertEqual(response.rcode, DNSRcode.noError, "id \(id): \(response)")
            XCTAssertEqual(response.addresses.count, 1, "id \(id): \(response)")
        }
        // Distinct names each need their own upstream query; the identical ones at least one.
        let state = try fake.state()
        XCTAssertGreaterThanOrEqual(state.total, 101, "\(state.total) upstream queries")
        XCTAssertEqual(Set(state.queries.map(\.qname)).count, 101)
    }
}
