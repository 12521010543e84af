import XCTest
import NetAddress
import DNSWire
@testable import Forwarding

final class ZoneRouterTests: XCTestCase {
    func router() throws -> ZoneRouter {
        let r = ZoneRouter(defaultGroup: 0)
        try r.add(zone: DNSName.wire(fromText: "cluster.local"), group: 1)
        try r.add(zone: DNSName.wire(fromText: "corp.example"), group: 2)
        try r.add(zone: DNSName.wire(fromText: "special.corp.example"), group: 3)
        try r.add(zone: DNSName.wire(fromText: "20.172.in-addr.arpa"), group: 1)
        return r
    }

    func testLongestSuffixOnLabelBoundaries() throws {
        let r = try router()
        XCTAssertEqual(r.route(text: "tomcat.dac-prod.svc.cluster.local"), 1)
        XCTAssertEqual(r.route(text: "cluster.local"), 1)
        XCTAssertEqual(r.route(text: "TOMCAT.Dac-Prod.SVC.Cluster.Local."), 1)
        XCTAssertEqual(r.route(text: "notcluster.local"), 0)
        XCTAssertEqual(r.route(text: "cluster.local.example.test"), 0)
        XCTAssertEqual(r.route(text: "local"), 0)
        XCTAssertEqual(r.route(text: "a.b.special.corp.example"), 3)
        XCTAssertEqual(r.route(text: "x.corp.example"), 2)
        XCTAssertEqual(r.route(text: "5.3.20.172.in-addr.arpa"), 1)
        XCTAssertEqual(r.route(text: "5.3.21.172.in-addr.arpa"), 0)
        XCTAssertEqual(r.route(text: "."), 0)
    }

    func testDuplicateZoneRejected() throws {
        let r = try router()
        XCTAssertThrowsError(try r.add(zone: DNSName.wire(fromText: "Cluster.Local."), group: 2))
    }

    func testRootZoneCatchesEverything() throws {
        let r = ZoneRouter(defaultGroup: 0)
        try r.add(zone: [0], group: 5)
        try r.add(zone: DNSName.wire(fromText: "cluster.local"), group: 1)
        XCTAssertEqual(r.route(text: "example.test"), 5)
        XCTAssertEqual(r.route(text: "a.cluster.local"), 1)
    }
}

final class ReverseZoneTests: XCTestCase {
    func zones(_ s: String) -> [String] { ReverseZones.zones(for: try! CIDR(parsing: s)) }

    func testOctetAlignedIPv4() {
        XCTAssertEqual(zones("172.20.0.0/16"), ["20.172.in-addr.arpa"])
        XCTAssertEqual(zones("10.0.0.0/8"), ["10.in-addr.arpa"])
        XCTAssertEqual(zones("192.168.1.0/24"), ["1.168.192.in-addr.arpa"])
        XCTAssertEqual(zones("192.168.1.7/32"), ["7.1.168.192.in-addr.arpa"])
    }

    func testNonOctetPrefixesExpand() {
        let z = zones("10.96.0.0/12")
        XCTAssertEqual(z.count, 16)
        XCTAssertEqual(z.first, "96.10.in-addr.arpa")
        XCTAssertEqual(z.last, "111.10.in-addr.arpa")
        XCTAssertEqual(zones("172.20.0.0/15"), ["20.172.in-addr.arpa", "21.172.in-addr.arpa"])
        XCTAssertEqual(zones("10.0.0.0/20").count, 16)
        XCTAssertEqual(zones("10.0.0.0/20").last, "15.0.10.in-addr.arpa")
    }

    func testIPv6Nibbles() {
        XCTAssertEqual(zones("fd00:10::/32"), ["0.1.0.0.0.0.d.f.ip6.arpa"])
        let z = zones("fd00::/30")
        XCTAssertEqual(z.count, 4)
        XCTAssertEqual(z[0], "0.0.0.0.0.0.d.f.ip6.arpa")
        XCTAssertEqual(z[3], "3.0.0.0.0.0.d.f.ip6.arpa")
    }
}

final class AccessListTests: XCTestCase {
    func testDefaultAllowsPrivateAndLoopbackOnly() {
        let a = AccessList.standard
        for ok in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.97", "::1", "fd00::1", "fe80::1", "::ffff:192.168.1.5"] {
            XCTAssertTrue(a.allows(IPAddress(ok)!), ok)
        }
        for no in ["8.8.8.8", "172.32.0.1", "192.169.0.1", "2001:db8::1", "::ffff:8.8.8.8"] {
            XCTAssertFalse(a.allows(IPAddress(no)!), no)
        }
    }

    func testCustomList() throws {
        let a = AccessList([try CIDR(parsing: "10.0.0.0/8")])
        XCTAssertFalse(a.allows(IPAddress("127.0.0.1")!))
        XCTAssertTrue(a.allows(IPAddress("10.200.0.1")!))
    }
}
