import Foundation
import NetAddress
@testable import RouteHelper
import XCTest

/// Sysctl access through a private root directory (never the host's /proc/sys), the drop-in
/// and the state file.
final class SysctlStoreTests: XCTestCase {
    var root = ""

    override func setUpWithError() throws {
        root = NSTemporaryDirectory() + "kb-sysctl-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root + "/net/ipv4/conf/eth0.100", withIntermediateDirectories: true)
        try "0\n".write(toFile: root + "/net/ipv4/ip_forward", atomically: true, encoding: .utf8)
        try "1\n".write(toFile: root + "/net/ipv4/conf/eth0.100/rp_filter", atomically: true, encoding: .utf8)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: root)
    }

    func testReadWriteThroughRoot() throws {
        let s = SysctlStore(root: root)
        XCTAssertEqual(try s.read(.ipv4Forward), "0")
        try s.write(.ipv4Forward, "1")
        XCTAssertEqual(try String(contentsOfFile: root + "/net/ipv4/ip_forward", encoding: .utf8), "1\n")
        XCTAssertNil(try s.read(.ipv6Forward))
        XCTAssertEqual(s.readInt(.rpFilter("eth0.100")), 1)
    }

    func testKeysWithDottedInterfaceNames() {
        XCTAssertEqual(SysctlKey.rpFilter("eth0.100").description, "net.ipv4.conf.eth0/100.rp_filter")
        XCTAssertEqual(SysctlKey(sysctlName: "net.ipv4.conf.eth0/100.rp_filter"), .rpFilter("eth0.100"))
        XCTAssertNil(SysctlKey(sysctlName: "net..ip_forward"))
    }

    func testDropInIsWrittenOnceAndRemoved() throws {
        let d = SysctlDropIn(directory: root + "/sysctl.d")
        XCTAssertTrue(try d.install([.ipv4Forward, .ipv6Forward]))
        XCTAssertFalse(try d.install([.ipv4Forward, .ipv6Forward]), "second install must be a no-op")
        XCTAssertEqual(try String(contentsOfFile: d.path, encoding: .utf8), """
            # Written by `kubebridge routes apply`, removed by `kubebridge routes withdraw`.
            # The office reaches pod and service IPs through this node, so it must forward packets.
            net.ipv4.ip_forward = 1
            net.ipv6.conf.all.forwarding = 1

            """)
        XCTAssertTrue(try d.remove())
        XCTAssertFalse(try d.remove())
    }

    func testStateRoundTripsAndIgnoresJunk() throws {
        var s = RouteState()
        s.enabledByKubebridge = [.ipv4Forward]
        try s.save(directory: root + "/state")
        XCTAssertEqual(try RouteState.load(directory: root + "/state"), s)
        XCTAssertEqual(RouteState.parse("# c\nenabled net.ipv4.ip_forward\nbogus\nenabled net.ipv4.ip_forward\n").enabledByKubebridge, [.ipv4Forward])
        try RouteState.remove(directory: root + "/state")
        XCTAssertNil(try RouteState.load(directory: root + "/state"))
    }
}

final class GatewayChecksTests: XCTestCase {
    func config(via: [String] = ["10.77.0.2"]) -> RoutesConfiguration {
        var c = RoutesConfiguration()
        c.podCIDRs = [cidr("172.20.0.0/16")]
        c.serviceCIDRs = [cidr("172.21.0.0/16")]
        c.via = via.map(ip)
        return c
    }

    func facts(connected: [KernelRoute] = [kernelRoute("10.77.0.0/24", proto: RTProt.kernel, scope: RTScope.link)],
               rp: [String: Int] = ["all": 0, "kbv0": 0], firewall: FirewallFacts? = nil) -> GatewayFacts {
        var f = GatewayFacts()
        f.connected = connected
        f.rpFilter = rp
        f.firewall = firewall ?? FirewallFacts(checkedWith: ["iptables"], hasMasquerade: true)
        f.interfaceName = { $0 == 3 ? "kbv0" : "eth\($0)" }
        return f
    }

    func run(_ c: RoutesConfiguration, _ f: GatewayFacts) throws -> [GatewayFinding] {
        GatewayChecks.run(configuration: c, desired: try c.desiredRoutes(), facts: f)
    }

    func testCleanGatewayHasNoFindings() throws {
        XCTAssertEqual(try run(config(), facts()), [])
    }

    func testOverlapWithConnectedOfficeSubnetIsAnError() throws {
        let office = kernelRoute("172.16.0.0/12", proto: RTProt.kernel, oif: 2, scope: RTScope.link)
        let findings = try run(config(), facts(connected: [office, kernelRoute("10.77.0.0/24", proto: RTProt.kernel, scope: RTScope.link)]))
        XCTAssertEqual(findings.filter { $0.severity == .error }.map(\.message), [
            "172.20.0.0/16 lies inside the directly connected subnet 172.16.0.0/12 on eth2: office hosts would look for pod/service addresses on their own LAN",
            "172.21.0.0/16 lies inside the directly connected subnet 172.16.0.0/12 on eth2: office hosts would look for pod/service addresses on their own LAN",
        ])
    }

    func testNodeLocalPodSubnetIsOnlyANote() throws {
        let cni0 = kernelRoute("172.20.1.0/24", proto: RTProt.kernel, oif: 9, scope: RTScope.link)
        let findings = try run(config(), facts(connected: [cni0, kernelRoute("10.77.0.0/24", proto: RTProt.kernel, scope: RTScope.link)]))
        XCTAssertEqual(findings.map(\.severity), [.note])
    }

    func testStrictRPFilterWarnsWithFix() throws {
        let findings = try run(config(), facts(rp: ["all": 0, "kbv0": 1, "eth1": 2]))
        XCTAssertEqual(findings, [GatewayFinding(
            severity: .warning,
            message: "rp_filter is strict on kbv0: packets whose reply path differs from their arrival path are dropped silently",
            fix: "sysctl -w net.ipv4.conf.kbv0.rp_filter=2 (loose mode; persist it in /etc/sysctl.d)")])
        // all=1 makes every interface strict (the kernel uses the maximum).
        XCTAssertEqual(try run(config(), facts(rp: ["all": 1, "kbv0": 0, "eth1": 2])).first?.fix,
                       "sysctl -w net.ipv4.conf.all.rp_filter=2 (loose mode; persist it in /etc/sysctl.d)")
    }

    func testDockerForwardDropIsDetectedFromIptables() throws {
        var fw = FirewallFacts(checkedWith: ["iptables"])
        FirewallProbe.parseIptablesFilter("""
            -P INPUT ACCEPT
            -P FORWARD DROP
            -P OUTPUT ACCEPT
            -N DOCKER-USER
            -A FORWARD -j DOCKER-USER
            -A DOCKER-USER -d 172.20.0.0/16 -j ACCEPT
            -A DOCKER-USER -s 172.20.0.0/16 -j ACCEPT
            """, into: &fw, label: "iptables")
        FirewallProbe.parseIptablesNat("-P POSTROUTING ACCEPT\n-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\n", into: &fw)
        XCTAssertEqual(fw.dropPolicies, ["iptables FORWARD policy DROP"])
        XCTAssertTrue(fw.hasMasquerade)
        let findings = try run(config(), facts(firewall: fw))
        XCTAssertEqual(findings.count, 1)
        XCTAssertEqual(findings[0].message, "iptables FORWARD policy DROP: forwarded office traffic to 172.21.0.0/16 will be dropped")
        XCTAssertEqual(findings[0].fix, "iptables -I DOCKER-USER -d 172.21.0.0/16 -j ACCEPT; iptables -I DOCKER-USER -s 172.21.0.0/16 -j ACCEPT"
                       + " (DOCKER-USER when Docker runs here, FORWARD otherwise; iptables-persistent keeps it)")
    }

    func testNftForwardDropAndMasquerade() {
        var fw = FirewallFacts(checkedWith: ["nft"])
        FirewallProbe.parseNftRuleset("""
            table inet filter {
                chain forward {
                    type filter hook forward priority filter; policy drop;
                }
            }
            table ip nat {
                chain postrouting {
                    type nat hook postrouting priority srcnat; policy accept;
                    oifname "eth0" masquerade
                }
            }
            """, into: &fw)
        XCTAssertEqual(fw.dropPolicies, ["nft inet filter chain forward policy drop"])
        XCTAssertTrue(fw.hasMasquerade)
    }

    func testMissingMasqueradeOnANonNodeGateway() throws {
        let findings = try run(config(), facts(firewall: FirewallFacts(checkedWith: ["iptables"])))
        XCTAssertEqual(findings.map(\.severity), [.warning])
        XCTAssertTrue(findings[0].fix!.hasPrefix("iptables -t nat -A POSTROUTING -d 172.20.0.0/16 -j MASQUERADE; "))
    }

    func testUnreachableNextHopWarns() throws {
        let findings = try run(config(via: ["10.99.0.1"]), facts())
        XCTAssertEqual(findings.map(\.message), [
            "next hop 10.99.0.1 for 172.20.0.0/16 is not on a directly connected subnet; the kernel will refuse the route",
            "next hop 10.99.0.1 for 172.21.0.0/16 is not on a directly connected subnet; the kernel will refuse the route",
        ])
    }
}
