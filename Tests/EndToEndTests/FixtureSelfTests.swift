import XCTest

/// Checks the stand-ins themselves, without kubebridge, so a broken environment
/// (knotd, python3, dig missing or misbehaving) is not mistaken for a server bug.
final class FixtureSelfTests: EndToEndTestCase {
    func testKnotStandInsAnswerDirectly() throws {
        let knots = try knots()
        let kube = knots.kubeDNS, up = knots.upstream
        assertAnswer(try Dig.query("web.prod.svc.cluster.local", server: kube.address, port: kube.port), "A", ["172.21.0.10"])
        assertAnswer(try Dig.query("5.3.20.172.in-addr.arpa", "PTR", server: kube.address, port: kube.port),
                     "PTR", ["172-20-3-5.prod.pod.cluster.local."])
        assertAnswer(try Dig.query("notcluster.local", server: up.address, port: up.port), "A", ["198.51.100.7"])
        assertAnswer(try Dig.query("app.corp.test", server: knots.corp.address, port: knots.corp.port), "A", ["10.1.2.3"])
        // The kube-dns stand-in is not authoritative for public names.
        XCTAssertEqual(try Dig.query("www.example.test", server: kube.address, port: kube.port).status, "REFUSED")

        // The big TXT RRset really needs TCP, the medium one needs EDNS.
        let truncated = try Dig.query("big.prod.svc.cluster.local", "TXT", server: kube.address, port: kube.port,
                                      options: ["+ignore", "+bufsize=1232"])
        XCTAssertTrue(truncated.tc, "\(truncated)")
        let full = try Dig.query("big.prod.svc.cluster.local", "TXT", server: kube.address, port: kube.port, options: ["+tcp"])
        XCTAssertEqual(full.rdata("TXT").count, Zones.bigTXTCount, "\(full)")
        let medium = try Dig.query("medium.prod.svc.cluster.local", "TXT", server: kube.address, port: kube.port,
                                   options: ["+ignore", "+noedns"])
        XCTAssertTrue(medium.tc, "\(medium)")
    }

    func testFakeOKCountsPerTransport() throws {
        let fake = try startFake(.ok)
        let udp = try Dig.query("one.example.test", server: fake.address, port: fake.port)
        assertAnswer(udp, "A", ["192.0.2.1"])
        XCTAssertEqual(udp.answers.first?.ttl, 300)
        let tcp = try Dig.query("two.example.test", server: fake.address, port: fake.port, options: ["+tcp"])
        assertAnswer(tcp, "A", ["192.0.2.2"])
        let state = try fake.state()
        XCTAssertEqual(state.udp, 1)
        XCTAssertEqual(state.tcp, 1)
        XCTAssertEqual(state.queries.map(\.qname), ["one.example.test.", "two.example.test."])
    }

    func testFakeTCMode() throws {
        let fake = try startFake(.tc)
        let ignored = try Dig.query("x.example.test", server: fake.address, port: fake.port, options: ["+ignore"])
        XCTAssertTrue(ignored.tc, "\(ignored)")
        XCTAssertTrue(ignored.answers.isEmpty, "\(ignored)")
        let retried = try Dig.query("x.example.test", server: fake.address, port: fake.port)
        XCTAssertTrue(retried.retriedOverTCP, "\(retried)")
        XCTAssertEqual(retried.transport, "TCP", "\(retried)")
        XCTAssertEqual(retried.addresses.count, 1, "\(retried)")
        let state = try fake.state()
        XCTAssertEqual(state.udp, 2)
        XCTAssertEqual(state.tcp, 1)
    }

    func testFakeFaultModes() throws {
        let query = QueryBuilder(id: 0x1111, name: "x.example.test").bytes

        let silent = try startFake(.silent)
        XCTAssertNil(try RawDNS.udp(query, host: silent.address, port: silent.port, timeout: 0.3))

        let servfail = try startFake(.servfail)
        let sf = try XCTUnwrap(RawDNS.udp(query, host: servfail.address, port: servfail.port, timeout: 1))
        XCTAssertEqual(try DNSResponse(sf).rcode, DNSRcode.servFail)

        let wrongID = try startFake(.wrongID)
        let wi = try DNSResponse(XCTUnwrap(RawDNS.udp(query, host: wrongID.address, port: wrongID.port, timeout: 1)))
        XCTAssertNotEqual(wi.id, 0x1111)
        XCTAssertEqual(wi.addresses, [FakeDNS.spoofedAddress])

        // A connected socket never sees the reply sent from another port.
        let wrongPort = try startFake(.wrongPort)
        XCTAssertNil(try RawDNS.udp(query, host: wrongPort.address, port: wrongPort.port, timeout: 0.3))
        XCTAssertEqual(try wrongPort.state().udp, 1)

        let wrongQuestion = try startFake(.wrongQuestion, thenOK: true)
        let sock = try RawDNS.UDPSocket(host: wrongQuestion.address, port: wrongQuestion.port)
        try sock.send(query)
        let spoof = try DNSResponse(XCTUnwrap(sock.receive(timeout: 1)))
        XCTAssertEqual(spoof.id, 0x1111)
        XCTAssertEqual(spoof.questionName, "spoofed.invalid.")
        XCTAssertEqual(spoof.addresses, [FakeDNS.spoofedAddress])
        let genuine = try DNSResponse(XCTUnwrap(sock.receive(timeout: 1)))
        XCTAssertEqual(genuine.questionName, "x.example.test.")
        XCTAssertEqual(genuine.addresses, ["192.0.2.1"])
    }
}
