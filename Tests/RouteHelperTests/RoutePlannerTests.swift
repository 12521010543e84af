import NetAddress
@testable import RouteHelper
import XCTest

final class RoutePlannerTests: XCTestCase {
    let pod = DesiredRoute(destination: cidr("172.20.0.0/16"), gateway: ip("10.77.0.2"), device: nil, origin: .podCIDR)
    let svc = DesiredRoute(destination: cidr("172.21.0.0/16"), gateway: ip("10.77.0.2"), device: nil, origin: .serviceCIDR)

    func spec(_ d: DesiredRoute, table: UInt32 = 254, oif: UInt32? = nil) -> RouteSpec {
        RouteSpec(destination: d.destination, gateway: d.gateway, outputInterface: oif, table: table)
    }

    func testEmptyTableAddsEverything() {
        let p = RoutePlanner.plan(desired: [(pod, spec(pod)), (svc, spec(svc))], current: [], adopt: false)
        XCTAssertEqual(p.actions, [.add(spec(pod), pod), .add(spec(svc), svc)])
        XCTAssertTrue(p.conflicts.isEmpty)
    }

    func testOwnIdenticalRouteIsKept() {
        let mine = kernelRoute("172.20.0.0/16", via: "10.77.0.2", proto: 201)
        let p = RoutePlanner.plan(desired: [(pod, spec(pod))], current: [mine], adopt: false)
        XCTAssertEqual(p.actions, [.keep(mine, pod)])
        XCTAssertTrue(p.changes.isEmpty)
    }

    func testOwnRouteWithOtherNextHopIsReplacedAtItsMetric() {
        let mine = kernelRoute("172.20.0.0/16", via: "10.77.0.9", proto: 201, metric: 1024)
        let p = RoutePlanner.plan(desired: [(pod, spec(pod))], current: [mine], adopt: false)
        var s = spec(pod)
        s.priority = 1024
        XCTAssertEqual(p.actions, [.replace(s, existing: mine, pod)])
    }

    func testForeignRouteIsAConflictAndNeverTouched() {
        let calico = kernelRoute("172.20.0.0/16", via: "10.77.0.5", proto: 80)
        let p = RoutePlanner.plan(desired: [(pod, spec(pod)), (svc, spec(svc))], current: [calico], adopt: false)
        XCTAssertEqual(p.actions, [.add(spec(svc), svc)])
        XCTAssertEqual(p.conflicts, [RouteConflict(desired: pod, existing: calico, reason: "pass --adopt to take it over")])
        XCTAssertEqual(RoutePresenter.conflictMessage(p.conflicts[0], interfaceName: { _ in "eth1" }),
                       "route 172.20.0.0/16 via 10.77.0.5 dev eth1 exists with proto 80 (Calico), not kubebridge's; pass --adopt to take it over")
    }

    func testAdoptTakesOverASingleForeignRoute() {
        let admin = kernelRoute("172.20.0.0/16", via: "10.77.0.5", proto: RTProt.boot, metric: 100)
        let p = RoutePlanner.plan(desired: [(pod, spec(pod))], current: [admin], adopt: true)
        var s = spec(pod)
        s.priority = 100
        XCTAssertEqual(p.actions, [.adopt(s, existing: admin, pod)])
        XCTAssertTrue(p.conflicts.isEmpty)
    }

    func testAdoptRefusesMultipathAndDuplicates() {
        var multi = kernelRoute("172.20.0.0/16", proto: RTProt.boot, oif: nil)
        multi.isMultipath = true
        XCTAssertEqual(RoutePlanner.plan(desired: [(pod, spec(pod))], current: [multi], adopt: true).conflicts.count, 1)
        let a = kernelRoute("172.20.0.0/16", via: "10.77.0.5", proto: RTProt.boot, metric: 100)
        let b = kernelRoute("172.20.0.0/16", via: "10.77.0.6", proto: RTProt.boot, metric: 200)
        let p = RoutePlanner.plan(desired: [(pod, spec(pod))], current: [a, b], adopt: true)
        XCTAssertEqual(p.conflicts.count, 2)
        XCTAssertTrue(p.actions.isEmpty)
    }

    func testStaleOwnRoutesAreRemovedInAnyTable() {
        let old = kernelRoute("172.29.0.0/16", via: "10.77.0.2", table: 1000, proto: 201)
        let mine = kernelRoute("172.20.0.0/16", via: "10.77.0.2", proto: 201)
        let p = RoutePlanner.plan(desired: [(pod, spec(pod))], current: [mine, old], adopt: false)
        XCTAssertEqual(p.actions, [.keep(mine, pod), .remove(old)])
    }

    func testSamePrefixInAnotherTableIsNotAConflict() {
        let other = kernelRoute("172.20.0.0/16", via: "10.77.0.5", table: 100, proto: RTProt.static)
        let p = RoutePlanner.plan(desired: [(pod, spec(pod))], current: [other], adopt: false)
        XCTAssertEqual(p.actions, [.add(spec(pod), pod)])
        XCTAssertTrue(p.conflicts.isEmpty)
    }

    func testOverlappingForeignRoutesAreLeftAloneWithAReason() {
        let cni = kernelRoute("172.20.1.0/24", proto: RTProt.kernel, oif: 5, scope: RTScope.link)
        let p = RoutePlanner.plan(desired: [(pod, spec(pod))], current: [cni], adopt: false)
        XCTAssertEqual(p.actions, [.add(spec(pod), pod)])
        XCTAssertEqual(p.leftAlone, [LeftAloneRoute(route: cni, reason: "more specific than 172.20.0.0/16: it keeps carrying its own range (longest prefix wins)")])
    }

    func testDeviceMustMatchWhenConfigured() {
        let mine = kernelRoute("172.20.0.0/16", via: "10.77.0.2", proto: 201, oif: 3)
        XCTAssertEqual(RoutePlanner.plan(desired: [(pod, spec(pod, oif: 3))], current: [mine], adopt: false).actions, [.keep(mine, pod)])
        if case .replace = RoutePlanner.plan(desired: [(pod, spec(pod, oif: 4))], current: [mine], adopt: false).actions.first {} else {
            XCTFail("a different device must be replaced")
        }
    }
}

final class RoutesConfigurationTests: XCTestCase {
    func testDesiredRoutes() throws {
        var c = RoutesConfiguration()
        c.podCIDRs = [cidr("172.20.0.0/16")]
        c.serviceCIDRs = [cidr("172.21.0.0/16")]
        c.via = [ip("192.168.2.80")]
        c.nodeRoutes = [try NodeRoute(parsing: "172.22.3.0/24=192.168.2.83")]
        XCTAssertEqual(try c.desiredRoutes().map(\.description),
                       ["172.20.0.0/16 via 192.168.2.80", "172.21.0.0/16 via 192.168.2.80", "172.22.3.0/24 via 192.168.2.83"])
    }

    func testHostGatewayPodCIDRCoveredByNodeRoutesNeedsNoVia() throws {
        var c = RoutesConfiguration()
        c.podCIDRs = [cidr("172.20.0.0/16")]
        c.nodeRoutes = [try NodeRoute(parsing: "172.20.3.0/24=192.168.2.83"), try NodeRoute(parsing: "172.20.4.0/24=192.168.2.84")]
        XCTAssertEqual(try c.desiredRoutes().map(\.origin), [.nodeRoute, .nodeRoute])
    }

    func testErrorsAreWordedForAdmins() {
        var c = RoutesConfiguration()
        c.serviceCIDRs = [cidr("172.21.0.0/16")]
        XCTAssertThrowsError(try c.desiredRoutes()) {
            XCTAssertEqual("\($0)", "172.21.0.0/16 (service-cidr) has no next hop: pass --via with an IPv4 address, or --dev IFACE")
        }
        c.via = [ip("10.0.0.1"), ip("10.0.0.2")]
        XCTAssertThrowsError(try c.desiredRoutes()) {
            XCTAssertEqual("\($0)", "--via is given twice for IPv4; give at most one next hop per IP family")
        }
        XCTAssertThrowsError(try NodeRoute(parsing: "172.20.3.0/24")) {
            XCTAssertEqual("\($0)", "node-route '172.20.3.0/24' is not CIDR=ADDRESS (e.g. 172.20.3.0/24=192.168.2.83)")
        }
        XCTAssertThrowsError(try NodeRoute(parsing: "172.20.3.0/24=fd00::1"))
    }
}
