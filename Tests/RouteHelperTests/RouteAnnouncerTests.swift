import NetAddress
@testable import RouteHelper
import XCTest

/// Byte-exact output of `kubebridge routes announce` for a dual-stack cluster. Each expected
/// text was checked by hand against the syntax of the tool it is pasted into; the DHCP option
/// bytes are checked independently in ClasslessStaticRoutesTests.
final class RouteAnnouncerTests: XCTestCase {
    let announcer = RouteAnnouncer(
        cidrs: [cidr("172.20.0.0/16"), cidr("172.21.0.0/16"), cidr("172.20.3.0/24"), cidr("fd00:20::/64")],
        gateways: [ip("192.168.2.71"), ip("fd00:2::71")], defaultGateway: ip("192.168.2.1"))

    static let expected: [RouteAnnouncer.Format: String] = [
        .windows: """
            REM kubebridge: routes to the Kubernetes cluster through 192.168.2.71 and fd00:2::71
            REM Run in an elevated Command Prompt; -p keeps the routes across reboots.
            route -p add 172.20.0.0 mask 255.255.0.0 192.168.2.71
            route -p add 172.21.0.0 mask 255.255.0.0 192.168.2.71
            REM fd00:20::/64: IPv6, use the powershell format

            """,
        .powershell: """
            # kubebridge: routes to the Kubernetes cluster through 192.168.2.71 and fd00:2::71
            # Run in an elevated PowerShell. The routes go on the interface that reaches the gateway.
            $kb4 = (Find-NetRoute -RemoteIPAddress 192.168.2.71 | Select-Object -First 1).InterfaceIndex
            $kb6 = (Find-NetRoute -RemoteIPAddress fd00:2::71 | Select-Object -First 1).InterfaceIndex
            New-NetRoute -DestinationPrefix 172.20.0.0/16 -InterfaceIndex $kb4 -NextHop 192.168.2.71
            New-NetRoute -DestinationPrefix 172.21.0.0/16 -InterfaceIndex $kb4 -NextHop 192.168.2.71
            New-NetRoute -DestinationPrefix fd00:20::/64 -InterfaceIndex $kb6 -NextHop fd00:2::71

            """,
        .linux: """
            # kubebridge: routes to the Kubernetes cluster through 192.168.2.71 and fd00:2::71
            # Run as root. Lasts until reboot: use the netplan or nmcli format to keep the routes.
            ip route add 172.20.0.0/16 via 192.168.2.71
            ip route add 172.21.0.0/16 via 192.168.2.71
            ip route add fd00:20::/64 via fd00:2::71

            """,
        .netplan: """
            # kubebridge: routes to the Kubernetes cluster through 192.168.2.71 and fd00:2::71
            # Merge under your office interface (eth0 here) in /etc/netplan/*.yaml, then run: netplan apply
            network:
              version: 2
              ethernets:
                eth0:
                  routes:
                    - to: 172.20.0.0/16
                      via: 192.168.2.71
                    - to: 172.21.0.0/16
                      via: 192.168.2.71
                    - to: fd00:20::/64
                      via: fd00:2::71

            """,
        .nmcli: """
            # kubebridge: routes to the Kubernetes cluster through 192.168.2.71 and fd00:2::71
            # Replace "Wired connection 1" with your connection (see: nmcli connection show). The routes persist.
            nmcli connection modify "Wired connection 1" +ipv4.routes "172.20.0.0/16 192.168.2.71"
            nmcli connection modify "Wired connection 1" +ipv4.routes "172.21.0.0/16 192.168.2.71"
            nmcli connection modify "Wired connection 1" +ipv6.routes "fd00:20::/64 fd00:2::71"
            nmcli connection up "Wired connection 1"

            """,
        .macos: """
            # kubebridge: routes to the Kubernetes cluster through 192.168.2.71 and fd00:2::71
            # Until reboot:
            sudo route -n add -net 172.20.0.0/16 192.168.2.71
            sudo route -n add -net 172.21.0.0/16 192.168.2.71
            sudo route -n add -inet6 fd00:20::/64 fd00:2::71
            # Persistent, for the network service "Ethernet" (see: networksetup -listallnetworkservices).
            # This replaces the service's additional routes, so it lists them all:
            sudo networksetup -setadditionalroutes "Ethernet" 172.20.0.0 255.255.0.0 192.168.2.71 172.21.0.0 255.255.0.0 192.168.2.71

            """,
        .cisco: """
            ! kubebridge: routes to the Kubernetes cluster through 192.168.2.71 and fd00:2::71
            configure terminal
            ip route 172.20.0.0 255.255.0.0 192.168.2.71 name kubebridge
            ip route 172.21.0.0 255.255.0.0 192.168.2.71 name kubebridge
            ipv6 route fd00:20::/64 fd00:2::71
            end
            write memory

            """,
        .huawei: """
            # kubebridge: routes to the Kubernetes cluster through 192.168.2.71 and fd00:2::71
            # Huawei VRP and H3C Comware
            system-view
            ip route-static 172.20.0.0 16 192.168.2.71 description kubebridge
            ip route-static 172.21.0.0 16 192.168.2.71 description kubebridge
            ipv6 route-static fd00:20:: 64 fd00:2::71
            return
            save

            """,
        .dhcpDnsmasq: """
            # kubebridge: routes to the Kubernetes cluster through 192.168.2.71 and fd00:2::71
            # IPv6 prefixes cannot travel in DHCPv4 option 121; announce them with router advertisements (RFC 4191 route information).
            # Option 121 (RFC 3442) and option 249 (older Windows) carry the same routes. Clients that receive
            # option 121 ignore option 3 (router), so the default route via 192.168.2.1 is included.
            # Give the gateway node 192.168.2.71 a static address: it must not route the cluster to itself.
            dhcp-option=121,172.20.0.0/16,192.168.2.71,172.21.0.0/16,192.168.2.71,0.0.0.0/0,192.168.2.1
            dhcp-option=249,172.20.0.0/16,192.168.2.71,172.21.0.0/16,192.168.2.71,0.0.0.0/0,192.168.2.1

            """,
        .dhcpISC: """
            # kubebridge: routes to the Kubernetes cluster through 192.168.2.71 and fd00:2::71
            # IPv6 prefixes cannot travel in DHCPv4 option 121; announce them with router advertisements (RFC 4191 route information).
            # Option 121 (RFC 3442) and option 249 (older Windows) carry the same routes. Clients that receive
            # option 121 ignore option 3 (router), so the default route via 192.168.2.1 is included.
            # Give the gateway node 192.168.2.71 a static address: it must not route the cluster to itself.
            # At the top level of dhcpd.conf:
            option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
            option ms-classless-static-routes code 249 = array of unsigned integer 8;
            # In the office subnet declaration:
            option rfc3442-classless-static-routes 16, 172, 20, 192, 168, 2, 71, 16, 172, 21, 192, 168, 2, 71, 0, 192, 168, 2, 1;
            option ms-classless-static-routes 16, 172, 20, 192, 168, 2, 71, 16, 172, 21, 192, 168, 2, 71, 0, 192, 168, 2, 1;

            """,
        .dhcpKea: """
            // kubebridge: routes to the Kubernetes cluster through 192.168.2.71 and fd00:2::71
            // IPv6 prefixes cannot travel in DHCPv4 option 121; announce them with router advertisements (RFC 4191 route information).
            // Option 121 (RFC 3442) and option 249 (older Windows) carry the same routes. Clients that receive
            // option 121 ignore option 3 (router), so the default route via 192.168.2.1 is included.
            // Give the gateway node 192.168.2.71 a static address: it must not route the cluster to itself.
            // Add to "option-data" of the office subnet in kea-dhcp4.conf (raw bytes, any Kea version):
            { "code": 121, "space": "dhcp4", "csv-format": false, "data": "10ac14c0a8024710ac15c0a8024700c0a80201" },
            { "code": 249, "space": "dhcp4", "csv-format": false, "data": "10ac14c0a8024710ac15c0a8024700c0a80201" }

            """,
    ]

    func testEveryFormatByteForByte() {
        for f in RouteAnnouncer.Format.allCases where f != .all {
            let a = announcer.render(f)
            XCTAssertEqual(a.text, RouteAnnouncerTests.expected[f], f.rawValue)
            XCTAssertTrue(a.problems.isEmpty, f.rawValue)
        }
    }

    func testAllConcatenatesEveryFormat() {
        let all = announcer.render(.all).text
        let expected = RouteAnnouncer.Format.allCases.filter { $0 != .all }
            .map { "==== \($0.rawValue) ====\n" + RouteAnnouncerTests.expected[$0]! }.joined(separator: "\n")
        XCTAssertEqual(all, expected)
    }

    func testNodeRoutesInsideAPodCIDRAreNotAnnouncedTwice() {
        XCTAssertEqual(announcer.cidrs, [cidr("172.20.0.0/16"), cidr("172.21.0.0/16"), cidr("fd00:20::/64")])
    }

    func testDHCPWithoutDefaultGatewayRefusesAndSaysWhy() {
        let a = RouteAnnouncer(cidrs: [cidr("172.20.0.0/16")], gateways: [ip("192.168.2.71")], defaultGateway: nil).render(.dhcpDnsmasq)
        XCTAssertEqual(a.text, """
            # kubebridge: routes to the Kubernetes cluster through 192.168.2.71
            # NOT GENERATED: clients that receive option 121 ignore option 3 (router), so the option must carry
            # the default route too. Re-run with --default-gateway ADDRESS (the office's usual router).

            """)
        XCTAssertEqual(a.problems, ["DHCP options need --default-gateway: clients that receive option 121 ignore option 3 (router)"])
    }

    func testIPv6WithoutIPv6GatewayIsSkippedLoudly() {
        let a = RouteAnnouncer(cidrs: [cidr("172.20.0.0/16"), cidr("fd00:20::/64")], gateways: [ip("192.168.2.71")],
                               defaultGateway: nil).render(.linux)
        XCTAssertEqual(a.text, """
            # kubebridge: routes to the Kubernetes cluster through 192.168.2.71
            # fd00:20::/64 skipped: pass --gateway with an IPv6 address of the gateway node
            # Run as root. Lasts until reboot: use the netplan or nmcli format to keep the routes.
            ip route add 172.20.0.0/16 via 192.168.2.71

            """)
        XCTAssertEqual(a.problems, ["fd00:20::/64 has no IPv6 gateway; pass --gateway with an IPv6 address"])
    }
}
