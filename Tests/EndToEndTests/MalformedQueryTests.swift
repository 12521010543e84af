import XCTest

/// Bad input: garbage is dropped, a readable header gets FORMERR / NOTIMP / BADVERS,
/// responses (QR=1) are ignored, nothing is forwarded upstream, and the server keeps
/// answering afterwards.
final class MalformedQueryTests: EndToEndTestCase {
    private var fake: FakeDNS!
    private var kb: KubebridgeProcess!

    override func setUpWithError() throws {
        try super.setUpWithError()
        fake = try startFake(.ok)
        kb = try startKubebridge(upstreams: [fake])
    }

    override func tearDown() {
        fake = nil
        kb = nil
        super.tearDown()
    }

    private func assertStillAnswersAndForwardedNothing(file: StaticString = #filePath, line: UInt = #line) throws {
        let state = try fake.state()
        XCTAssertEqual(state.total, 0, "bad input was forwarded upstream: \(state.queries)", file: file, line: line)
        let result = try dig(kb, "after-bad-input.example.test")
        XCTAssertEqual(result.status, "NOERROR", "server stopped answering after bad input: \(result)", file: file, line: line)
        XCTAssertEqual(result.addresses, ["192.0.2.1"], "\(result)", file: file, line: line)
    }

    /// Sends `packet`, expects a reply with `rcode`, the query's ID and QR=1.
    private func assertRcode(_ packet: [UInt8], _ rcode: Int, _ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
        guard let response = try rawUDP(kb, packet, timeout: 5) else {
            XCTFail("\(what): no reply, expected rcode \(rcode)", file: file, line: line)
            return
        }
        XCTAssertEqual(response.rcode, rcode, "\(what): \(response)", file: file, line: line)
        XCTAssertEqual(response.id, UInt16(packet[0]) << 8 | UInt16(packet[1]), "\(what): ID not echoed", file: file, line: line)
        XCTAssertTrue(response.qr, "\(what): QR not set: \(response)", file: file, line: line)
    }

    func testGarbageIsDropped() throws {
        let sock = try RawDNS.UDPSocket(host: kb.host, port: kb.port)
        for packet: [UInt8] in [[], [0x00], [0xDE, 0xAD, 0xBE, 0xEF, 0x01], Array(repeating: 0xFF, count: 11)] {
            try sock.send(packet)
        }
        XCTAssertNil(try sock.receive(timeout: 0.5), "a datagram shorter than a DNS header got a reply")
        try assertStillAnswersAndForwardedNothing()
    }

    func testQDCountOtherThanOneIsFORMERR() throws {
        var headerOnly = QueryBuilder(id: 0x2001)
        headerOnly.qdcount = 2
        try assertRcode(headerOnly.bytes, DNSRcode.formErr, "12-byte header with QDCOUNT=2")

        var two = QueryBuilder(id: 0x2002)
        two.questions = [("a.example.test.", DNSType.a), ("b.example.test.", DNSType.a)]
        try assertRcode(two.bytes, DNSRcode.formErr, "two complete questions")

        try assertRcode(QueryBuilder(id: 0x2003).bytes, DNSRcode.formErr, "QDCOUNT=0")
        try assertStillAnswersAndForwardedNothing()
    }

    func testTruncatedOrLoopingQuestionIsFORMERR() throws {
        let header = QueryBuilder(id: 0x2101, name: "x.example.test.").header()
        try assertRcode(header + [3] + Array("www".utf8), DNSRcode.formErr, "question name cut short")
        let header2 = QueryBuilder(id: 0x2102, name: "x").header()
        try assertRcode(header2 + QueryBuilder.encodeName("www.example.test.") + [0, 1], DNSRcode.formErr, "QCLASS missing")
        let header3 = QueryBuilder(id: 0x2103, name: "x").header()
        try assertRcode(header3 + [0xC0, 0x0C, 0, 1, 0, 1], DNSRcode.formErr, "question name is a compression pointer to itself")
        let header4 = QueryBuilder(id: 0x2104, name: "x").header()
        try assertRcode(header4 + [0x45] + Array(repeating: 0x61, count: 5) + [0, 0, 1, 0, 1], DNSRcode.formErr, "label with reserved type bits 01")
        try assertStillAnswersAndForwardedNothing()
    }

    func testOtherOpcodesAreNOTIMP() throws {
        for opcode: UInt8 in [1, 2, 5] {   // IQUERY, STATUS, UPDATE
            var query = QueryBuilder(id: 0x2200 + UInt16(opcode), name: "opcode.example.test.")
            query.opcode = opcode
            try assertRcode(query.bytes, DNSRcode.notImp, "opcode \(opcode)")
        }
        try assertStillAnswersAndForwardedNothing()
    }

    func testResponsesAreIgnored() throws {
        var response = QueryBuilder(id: 0x2301, name: "qr.example.test.")
        response.qr = true
        let sock = try RawDNS.UDPSocket(host: kb.host, port: kb.port)
        try sock.send(response.bytes)
        XCTAssertNil(try sock.receive(timeout: 0.5), "a packet with QR=1 got a reply")
        try assertStillAnswersAndForwardedNothing()
    }

    /// Datagrams larger than any DNS query kubebridge accepts (60,000 bytes; 4,000 bytes of a
    /// query followed by junk) are dropped or refused without being forwarded, and the next
    /// query is served.
    func testOversizedDatagramsAreNotForwarded() throws {
        let sock = try RawDNS.UDPSocket(host: kb.host, port: kb.port)
        let query = QueryBuilder(id: 0x2601, name: "oversized.example.test.").bytes
        try sock.send(query + [UInt8](repeating: 0, count: 60_000 - query.count))
        XCTAssertNil(try sock.receive(timeout: 0.5), "a 60,000-byte datagram got a reply")
        let r = try XCTUnwrap(rawUDP(kb, QueryBuilder(id: 0x2602, name: "junk-tail.example.test.").bytes
                                         + [UInt8](repeating: 0xAB, count: 3_900), timeout: 2), "no FORMERR for junk after the question")
        XCTAssertEqual(r.rcode, DNSRcode.formErr, "a query with 3,900 bytes of junk after the question: \(r)")
        XCTAssertEqual(r.id, 0x2602)
        try assertStillAnswersAndForwardedNothing()
    }

    /// A class other than IN (CHAOS, an unassigned 0xFEED) is forwarded with its class, the
    /// answer echoes it, and it is cached apart from the IN question of the same name.
    func testOtherClassesAreForwardedAndCachedSeparately() throws {
        func withClass(_ qclass: UInt16, id: UInt16) -> [UInt8] {
            var b = QueryBuilder(id: id, name: "Version.Example.Test.", type: DNSType.a).bytes
            b[b.count - 2] = UInt8(qclass >> 8)
            b[b.count - 1] = UInt8(qclass & 0xff)
            return b
        }
        var asked = 0
        for (i, qclass) in [UInt16(3), 0xFEED, 1].enumerated() {
            let q = withClass(qclass, id: UInt16(0x2700 + i))
            let r = try XCTUnwrap(rawUDP(kb, q), "class \(qclass): no answer")
            XCTAssertEqual(r.rcode, DNSRcode.noError, "class \(qclass): \(r)")
            XCTAssertEqual(r.id, UInt16(0x2700 + i))
            XCTAssertEqual(r.questionBytes, Array(q[12...]), "class \(qclass): the question (and its class) must be echoed")
            asked += 1
            XCTAssertEqual(try fake.state().count("version.example.test."), asked, "class \(qclass) is its own cache entry")
            // Asked again: from the cache.
            let again = try XCTUnwrap(rawUDP(kb, withClass(qclass, id: UInt16(0x2710 + i))))
            XCTAssertEqual(again.questionBytes, Array(q[12...]))
            XCTAssertEqual(try fake.state().count("version.example.test."), asked, "class \(qclass), second time: cached")
        }
    }

    func testUnknownEDNSVersionIsBADVERS() throws {
        var query = QueryBuilder(id: 0x2401, name: "edns1.example.test.")
        query.edns = (1232, 1, false)
        let response = try XCTUnwrap(rawUDP(kb, query.bytes), "no reply to an EDNS version 1 query")
        XCTAssertEqual(response.id, 0x2401)
        XCTAssertNotNil(response.opt, "BADVERS must be carried in an OPT record: \(response)")
        XCTAssertEqual(response.rcode, DNSRcode.badVers, "\(response)")
        XCTAssertEqual(response.opt?.version, 0, "the OPT record should advertise the version we do support: \(response)")
        XCTAssertTrue(response.answers.isEmpty, "\(response)")
        try assertStillAnswersAndForwardedNothing()
    }

    func testFORMERROverTCP() throws {
        var headerOnly = QueryBuilder(id: 0x2501)
        headerOnly.qdcount = 2
        let connection = try RawDNS.TCPConnection(host: kb.host, port: kb.port)
        try connection.send([headerOnly.bytes])
        let response = try DNSResponse(XCTUnwrap(connection.receive(timeout: 5), "no FORMERR over TCP"))
        XCTAssertEqual(response.id, 0x2501)
        XCTAssertEqual(response.rcode, DNSRcode.formErr, "\(response)")
        try assertStillAnswersAndForwardedNothing()
    }
}
