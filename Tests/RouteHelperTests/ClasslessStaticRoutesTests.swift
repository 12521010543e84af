import NetAddress
@testable import RouteHelper
import XCTest

/// RFC 3442 destination descriptors: the table in section 3 of the RFC, plus the widths
/// kubebridge meets in practice (/12 for kubeadm's service range, /32 for a single VIP).
final class ClasslessStaticRoutesTests: XCTestCase {
    let router = ip("192.168.2.71") // c0 a8 02 47

    func descriptor(_ c: String) -> [UInt8] {
        Array(ClasslessStaticRoutes.encode(destination: cidr(c), router: router).dropLast(4))
    }

    func testRFC3442Table() {
        XCTAssertEqual(descriptor("0.0.0.0/0"), [0])
        XCTAssertEqual(descriptor("10.0.0.0/8"), [8, 10])
        XCTAssertEqual(descriptor("10.0.0.0/24"), [24, 10, 0, 0])
        XCTAssertEqual(descriptor("10.17.0.0/16"), [16, 10, 17])
        XCTAssertEqual(descriptor("10.27.129.0/24"), [24, 10, 27, 129])
        XCTAssertEqual(descriptor("10.229.0.128/25"), [25, 10, 229, 0, 128])
        XCTAssertEqual(descriptor("10.198.122.47/32"), [32, 10, 198, 122, 47])
    }

    func testWidthsKubebridgeMeets() {
        XCTAssertEqual(descriptor("10.96.0.0/12"), [12, 10, 96])
        XCTAssertEqual(descriptor("172.20.0.0/16"), [16, 172, 20])
        XCTAssertEqual(descriptor("172.20.3.0/24"), [24, 172, 20, 3])
        XCTAssertEqual(descriptor("10.96.0.10/32"), [32, 10, 96, 0, 10])
        XCTAssertEqual(descriptor("172.128.0.0/9"), [9, 172, 128])
    }

    func testRouterFollowsEachDescriptor() {
        let bytes = ClasslessStaticRoutes.encode([(cidr("172.20.0.0/16"), router), (cidr("0.0.0.0/0"), ip("192.168.2.1"))])
        XCTAssertEqual(bytes, [16, 172, 20, 192, 168, 2, 71, 0, 192, 168, 2, 1])
        XCTAssertEqual(ClasslessStaticRoutes.hex(bytes), "10ac14c0a8024700c0a80201")
    }
}
