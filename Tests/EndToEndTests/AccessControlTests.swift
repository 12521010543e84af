import XCTest

/// `--allow CIDR`: clients outside every allowed prefix get REFUSED and cause no upstream traffic.
final class AccessControlTests: EndToEndTestCase {
    func testClientOutsideAllowListIsRefused() throws {
        let fake = try startFake(.ok)
        let kb = try startKubebridge(upstreams: [fake], ["--allow", "10.0.0.0/8"])
        let udp = try dig(kb, "acl.example.test")
        XCTAssertEqual(udp.status, "REFUSED", "query from 127.0.0.1 with --allow 10.0.0.0/8 only: \(udp)")
        XCTAssertTrue(udp.answers.isEmpty, "\(udp)")
        let tcp = try dig(kb, "acl-tcp.example.test", options: ["+tcp"])
        XCTAssertTrue(tcp.status == "REFUSED" || !tcp.gotResponse, "TCP from a refused client: \(tcp)")
        let raw = try XCTUnwrap(rawUDP(kb, QueryBuilder(id: 0x4101, name: "Acl-Raw.Example.Test.").bytes), "no REFUSED reply")
        XCTAssertEqual(raw.rcode, DNSRcode.refused, "\(raw)")
        XCTAssertEqual(raw.id, 0x4101)
        XCTAssertEqual(try fake.state().total, 0, "a refused query was forwarded upstream")
    }

    func testLoopbackIsAllowedWhenListed() throws {
        let fake = try startFake(.ok)
        let kb = try startKubebridge(upstreams: [fake], ["--allow", "10.0.0.0/8", "--allow", "127.0.0.1/32"])
        let result = try dig(kb, "allowed.example.test")
        XCTAssertEqual(result.status, "NOERROR", "\(result)")
        XCTAssertEqual(result.addresses, ["192.0.2.1"], "\(result)")
    }
}
