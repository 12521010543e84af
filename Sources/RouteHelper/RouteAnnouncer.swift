import NetAddress

/// DHCP classless static routes (RFC 3442, option 121; Microsoft's option 249 has the same
/// encoding): per route, the prefix length, the significant octets of the destination
/// (ceil(length / 8) of them), then the four octets of the router.
public enum ClasslessStaticRoutes {
    public static func encode(destination: CIDR, router: IPAddress) -> [UInt8] {
        precondition(destination.address.family == .v4 && router.family == .v4, "RFC 3442 is IPv4 only")
        let significant = (destination.prefix + 7) / 8
        return [UInt8(destination.prefix)] + destination.address.bytes.prefix(significant) + router.bytes
    }

    public static func encode(_ routes: [(CIDR, IPAddress)]) -> [UInt8] {
        routes.flatMap { encode(destination: $0.0, router: $0.1) }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef")
        return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] })
    }
}

/// `kubebridge routes announce`: instructions the rest of the office pastes to reach the
/// cluster through the gateway node. Pure text generation, tested byte-for-byte.
public struct RouteAnnouncer {
    public enum Format: String, CaseIterable, Sendable {
        case windows, powershell, linux, netplan, nmcli, macos, cisco, huawei
        case dhcpDnsmasq = "dhcp-dnsmasq"
        case dhcpISC = "dhcp-isc"
        case dhcpKea = "dhcp-kea"
        case all

        var isDHCP: Bool { self == .dhcpDnsmasq || self == .dhcpISC || self == .dhcpKea }
    }

    public struct Announcement: Sendable {
        public var text: String
        /// Reasons the output is incomplete (printed to stderr; non-zero exit for a single format).
        public var problems: [String]
    }

    public let cidrs: [CIDR]
    public let gateways: [IPAddress]
    public let defaultGateway: IPAddress?

    /// `cidrs` are announced in order; duplicates and prefixes inside an earlier one (node
    /// routes inside the pod CIDR) are dropped because the covering route already carries them.
    public init(cidrs: [CIDR], gateways: [IPAddress], defaultGateway: IPAddress?) {
        var kept: [CIDR] = []
        for c in cidrs where !kept.contains(c) && !cidrs.contains(where: { $0.prefix < c.prefix && $0.overlaps(c) }) {
            kept.append(c)
        }
        self.cidrs = kept
        self.gateways = gateways
        self.defaultGateway = defaultGateway
    }

    func gateway(for c: CIDR) -> IPAddress? { gateways.first { $0.family == c.address.family } }
    var v4Gateway: IPAddress? { gateways.first { $0.family == .v4 } }
    var routed: [(CIDR, IPAddress)] { cidrs.compactMap { c in gateway(for: c).map { (c, $0) } } }
    var skipped: [CIDR] { cidrs.filter { gateway(for: $0) == nil } }

    var through: String { gateways.map(\.description).joined(separator: " and ") }

    public func render(_ format: Format) -> Announcement {
        if format == .all {
            var text = ""
            var problems: [String] = []
            for f in Format.allCases where f != .all {
                let a = render(f)
                text += (text.isEmpty ? "" : "\n") + "==== \(f.rawValue) ====\n" + a.text
                problems += a.problems.filter { !problems.contains($0) }
            }
            return Announcement(text: text, problems: problems)
        }
        var problems: [String] = []
        var out = ""
        let c = commentPrefix(format)
        out += "\(c) kubebridge: routes to the Kubernetes cluster through \(through)\n"
        for s in skipped {
            let family = s.address.family == .v4 ? "IPv4" : "IPv6"
            out += "\(c) \(s) skipped: pass --gateway with an \(family) address of the gateway node\n"
            problems.append("\(s) has no \(family) gateway; pass --gateway with an \(family) address")
        }
        switch format {
        case .windows: out += windows()
        case .powershell: out += powershell()
        case .linux: out += linux()
        case .netplan: out += netplan()
        case .nmcli: out += nmcli()
        case .macos: out += macos()
        case .cisco: out += cisco()
        case .huawei: out += huawei()
        case .dhcpDnsmasq, .dhcpISC, .dhcpKea: out += dhcp(format, &problems)
        case .all: break
        }
        return Announcement(text: out, problems: problems)
    }

    func commentPrefix(_ f: Format) -> String {
        switch f {
        case .windows: return "REM"
        case .cisco: return "!"
        case .dhcpKea: return "//"
        default: return "#"
        }
    }

    private func windows() -> String {
        var s = "REM Run in an elevated Command Prompt; -p keeps the routes across reboots.\n"
        for (c, g) in routed {
            if let mask = c.netmaskV4 {
                s += "route -p add \(c.address) mask \(mask) \(g)\n"
            } else {
                s += "REM \(c): IPv6, use the powershell format\n"
            }
        }
        return s
    }

    private func powershell() -> String {
        var s = "# Run in an elevated PowerShell. The routes go on the interface that reaches the gateway.\n"
        for g in gateways {
            let v = g.family == .v4 ? "$kb4" : "$kb6"
            guard routed.contains(where: { $0.1 == g }) else { continue }
            s += "\(v) = (Find-NetRoute -RemoteIPAddress \(g) | Select-Object -First 1).InterfaceIndex\n"
        }
        for (c, g) in routed {
            let v = g.family == .v4 ? "$kb4" : "$kb6"
            s += "New-NetRoute -DestinationPrefix \(c) -InterfaceIndex \(v) -NextHop \(g)\n"
        }
        return s
    }

    private func linux() -> String {
        var s = "# Run as root. Lasts until reboot: use the netplan or nmcli format to keep the routes.\n"
        for (c, g) in routed { s += "ip route add \(c) via \(g)\n" }
        return s
    }

    private func netplan() -> String {
        var s = "# Merge under your office interface (eth0 here) in /etc/netplan/*.yaml, then run: netplan apply\n"
        s += "network:\n  version: 2\n  ethernets:\n    eth0:\n      routes:\n"
        for (c, g) in routed { s += "        - to: \(c)\n          via: \(g)\n" }
        return s
    }

    private func nmcli() -> String {
        let conn = "\"Wired connection 1\""
        var s = "# Replace \(conn) with your connection (see: nmcli connection show). The routes persist.\n"
        for (c, g) in routed {
            let key = c.address.family == .v4 ? "ipv4.routes" : "ipv6.routes"
            s += "nmcli connection modify \(conn) +\(key) \"\(c) \(g)\"\n"
        }
        s += "nmcli connection up \(conn)\n"
        return s
    }

    private func macos() -> String {
        var s = "# Until reboot:\n"
        for (c, g) in routed {
            s += c.address.family == .v4 ? "sudo route -n add -net \(c) \(g)\n" : "sudo route -n add -inet6 \(c) \(g)\n"
        }
        let v4 = routed.filter { $0.0.address.family == .v4 }
        if !v4.isEmpty {
            s += "# Persistent, for the network service \"Ethernet\" (see: networksetup -listallnetworkservices).\n"
            s += "# This replaces the service's additional routes, so it lists them all:\n"
            s += "sudo networksetup -setadditionalroutes \"Ethernet\""
            for (c, g) in v4 { s += " \(c.address) \(c.netmaskV4!) \(g)" }
            s += "\n"
        }
        return s
    }

    private func cisco() -> String {
        var s = "configure terminal\n"
        for (c, g) in routed {
            if let mask = c.netmaskV4 {
                s += "ip route \(c.address) \(mask) \(g) name kubebridge\n"
            } else {
                s += "ipv6 route \(c) \(g)\n"
            }
        }
        s += "end\nwrite memory\n"
        return s
    }

    private func huawei() -> String {
        var s = "# Huawei VRP and H3C Comware\nsystem-view\n"
        for (c, g) in routed {
            if c.address.family == .v4 {
                s += "ip route-static \(c.address) \(c.prefix) \(g) description kubebridge\n"
            } else {
                s += "ipv6 route-static \(c.address) \(c.prefix) \(g)\n"
            }
        }
        s += "return\nsave\n"
        return s
    }

    private func dhcp(_ f: Format, _ problems: inout [String]) -> String {
        let c = commentPrefix(f)
        let v4 = routed.filter { $0.0.address.family == .v4 }
        var s = ""
        if routed.contains(where: { $0.0.address.family == .v6 }) {
            s += "\(c) IPv6 prefixes cannot travel in DHCPv4 option 121; announce them with router advertisements (RFC 4191 route information).\n"
        }
        guard let def = defaultGateway else {
            s += "\(c) NOT GENERATED: clients that receive option 121 ignore option 3 (router), so the option must carry\n"
            s += "\(c) the default route too. Re-run with --default-gateway ADDRESS (the office's usual router).\n"
            problems.append("DHCP options need --default-gateway: clients that receive option 121 ignore option 3 (router)")
            return s
        }
        guard def.family == .v4 else {
            problems.append("--default-gateway must be an IPv4 address")
            return s + "\(c) NOT GENERATED: --default-gateway must be an IPv4 address\n"
        }
        let routes = v4 + [(try! CIDR(parsing: "0.0.0.0/0"), def)]
        let bytes = ClasslessStaticRoutes.encode(routes)
        s += "\(c) Option 121 (RFC 3442) and option 249 (older Windows) carry the same routes. Clients that receive\n"
        s += "\(c) option 121 ignore option 3 (router), so the default route via \(def) is included.\n"
        if let gw = v4Gateway {
            s += "\(c) Give the gateway node \(gw) a static address: it must not route the cluster to itself.\n"
        }
        switch f {
        case .dhcpDnsmasq:
            let list = routes.map { "\($0.0),\($0.1)" }.joined(separator: ",")
            s += "dhcp-option=121,\(list)\n"
            s += "dhcp-option=249,\(list)\n"
        case .dhcpISC:
            let list = bytes.map(String.init).joined(separator: ", ")
            s += "# At the top level of dhcpd.conf:\n"
            s += "option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;\n"
            s += "option ms-classless-static-routes code 249 = array of unsigned integer 8;\n"
            s += "# In the office subnet declaration:\n"
            s += "option rfc3442-classless-static-routes \(list);\n"
            s += "option ms-classless-static-routes \(list);\n"
        case .dhcpKea:
            let hex = ClasslessStaticRoutes.hex(bytes)
            s += "// Add to \"option-data\" of the office subnet in kea-dhcp4.conf (raw bytes, any Kea version):\n"
            s += "{ \"code\": 121, \"space\": \"dhcp4\", \"csv-format\": false, \"data\": \"\(hex)\" },\n"
            s += "{ \"code\": 249, \"space\": \"dhcp4\", \"csv-format\": false, \"data\": \"\(hex)\" }\n"
        default:
            break
        }
        return s
    }
}
