import XCTest
@testable import NetAddress

final class NetAddressTests: XCTestCase {
    func testParseAndFormat() {
        XCTAssertEqual(IPAddress("192.168.1.97")?.description, "192.168.1.97")
        XCTAssertEqual(IPAddress("fd00:0:0:0:0:0:0:10")?.description, "fd00::10")
        XCTAssertEqual(IPAddress("::1")?.description, "::1")
        XCTAssertEqual(IPAddress("::")?.description, "::")
        XCTAssertEqual(IPAddress("2001:db8:0:1:0:0:0:1")?.description, "2001:db8:0:1::1")
        XCTAssertEqual(IPAddress("::ffff:10.1.2.3")?.low, 0x0000_ffff_0a01_0203)
        for bad in ["1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1:2:3:4:5:6:7:8:9", "1::2::3", "g::1", ""] {
            XCTAssertNil(IPAddress(bad), bad)
        }
    }

    func testCIDR() throws {
        let c = try CIDR(parsing: "172.20.0.0/16")
        XCTAssertTrue(c.contains(IPAddress("172.20.3.5")!))
        XCTAssertFalse(c.contains(IPAddress("172.21.0.1")!))
        XCTAssertEqual(c.netmaskV4?.description, "255.255.0.0")
        XCTAssertThrowsError(try CIDR(parsing: "172.20.1.0/16")) { e in
            XCTAssertEqual("\(e)", "'172.20.1.0/16' has host bits set; did you mean 172.20.0.0/16?")
        }
        XCTAssertThrowsError(try CIDR(parsing: "10.0.0.0/33"))
        XCTAssertThrowsError(try CIDR(parsing: "10.0.0.0"))
        XCTAssertTrue(try CIDR(parsing: "10.96.0.0/12").overlaps(try CIDR(parsing: "10.100.0.0/16")))
        XCTAssertFalse(try CIDR(parsing: "10.96.0.0/12").overlaps(try CIDR(parsing: "10.112.0.0/16")))
        XCTAssertEqual(try CIDR(parsing: "fd00:10::/64").description, "fd00:10::/64")
        XCTAssertEqual(try CIDR(parsing: "0.0.0.0/0").netmaskV4?.description, "0.0.0.0")
    }

    func testEndpoint() throws {
        XCTAssertEqual(try Endpoint(parsing: "10.96.0.10").description, "10.96.0.10:53")
        XCTAssertEqual(try Endpoint(parsing: "10.96.0.10:5353").port, 5353)
        XCTAssertEqual(try Endpoint(parsing: "[::1]:5353").description, "[::1]:5353")
        XCTAssertEqual(try Endpoint(parsing: "fd00::10").description, "[fd00::10]:53")
        XCTAssertEqual(try Endpoint(parsing: "127.0.0.1:5353", defaultPort: 53).port, 5353)
        for bad in ["10.0.0.1:0", "10.0.0.1:70000", "[::1", "[10.0.0.1]:53", "host:53", "10.0.0.1:"] {
            XCTAssertThrowsError(try Endpoint(parsing: bad), bad)
        }
    }
}
