import NetAddress

/// A problem on the gateway that routes alone cannot fix. Errors stop `apply`; warnings are
/// printed with the command that fixes them.
struct GatewayFinding: Equatable {
    enum Severity: String { case error, warning, note }
    var severity: Severity
    var message: String
    var fix: String?
}

/// What the firewall looks like, as far as forwarding through this node is concerned.
struct FirewallFacts: Equatable {
    /// Tools that were read ("iptables", "nft"); empty when none could be run.
    var checkedWith: [String] = []
    /// FORWARD chains (or nft forward hooks) whose policy is drop.
    var dropPolicies: [String] = []
    /// Prefixes with an explicit ACCEPT in the filter table (`-d P … -j ACCEPT`, `-s P … -j ACCEPT`).
    var acceptedDestinations: Set<String> = []
    var acceptedSources: Set<String> = []
    var hasMasquerade = false
    var hasKubeProxyMasquerade = false
}

/// Reading the firewall without changing it. The parsers are pure; `gather` runs the tools.
enum FirewallProbe {
    /// `iptables -S` (filter table): policies and ACCEPT rules by prefix.
    static func parseIptablesFilter(_ text: String, into f: inout FirewallFacts, label: String) {
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            if words.count >= 3, words[0] == "-P", words[1] == "FORWARD", words[2] == "DROP" {
                f.dropPolicies.append("\(label) FORWARD policy DROP")
            }
            guard words.first == "-A", words.last == "ACCEPT", words.count >= 2,
                  words[words.count - 2] == "-j" else { continue }
            // Only unconditional ACCEPTs by prefix count; a rule with extra matches may not cover us.
            for (i, w) in words.enumerated() where i + 1 < words.count {
                if w == "-d" { f.acceptedDestinations.insert(words[i + 1]) }
                if w == "-s" { f.acceptedSources.insert(words[i + 1]) }
            }
        }
    }

    /// `iptables -t nat -S`: is anything masqueraded, and does kube-proxy mark traffic for it.
    static func parseIptablesNat(_ text: String, into f: inout FirewallFacts) {
        for line in text.split(separator: "\n") where line.hasPrefix("-A ") {
            if line.contains("-j MASQUERADE") || line.contains("-j SNAT") { f.hasMasquerade = true }
            if line.contains("KUBE-MARK-MASQ") { f.hasKubeProxyMasquerade = true }
        }
    }

    /// `nft list ruleset`: base chains hooked at forward with `policy drop`, and masquerade.
    static func parseNftRuleset(_ text: String, into f: inout FirewallFacts) {
        var table = ""
        var chain = ""
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingWhitespace()
            if line.hasPrefix("table ") { table = String(line.dropFirst(6).split(separator: " {").first ?? "") }
            if line.hasPrefix("chain ") { chain = String(line.dropFirst(6).split(separator: " ").first ?? "") }
            if line.contains("hook forward") && line.contains("policy drop") {
                f.dropPolicies.append("nft \(table) chain \(chain) policy drop")
            }
            if line.contains("masquerade") || line.contains(" snat ") { f.hasMasquerade = true }
            if line.contains("KUBE-MARK-MASQ") { f.hasKubeProxyMasquerade = true }
        }
    }

    static func firstExecutable(_ names: [String]) -> String? {
        for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
            for n in names where Sys.isExecutable(dir + "/" + n) { return dir + "/" + n }
        }
        return nil
    }

    static func gather(ipv6: Bool) -> FirewallFacts {
        var f = FirewallFacts()
        if let ipt = firstExecutable(["iptables"]) {
            if let r = Sys.runCapturing([ipt, "-w", "2", "-S"], timeoutSeconds: 5), r.status == 0 {
                parseIptablesFilter(r.output, into: &f, label: "iptables")
                f.checkedWith.append("iptables")
            }
            if let r = Sys.runCapturing([ipt, "-w", "2", "-t", "nat", "-S"], timeoutSeconds: 5), r.status == 0 {
                parseIptablesNat(r.output, into: &f)
            }
        }
        if ipv6, let ip6t = firstExecutable(["ip6tables"]),
           let r = Sys.runCapturing([ip6t, "-w", "2", "-S"], timeoutSeconds: 5), r.status == 0 {
            parseIptablesFilter(r.output, into: &f, label: "ip6tables")
        }
        if let nft = firstExecutable(["nft"]),
           let r = Sys.runCapturing([nft, "list", "ruleset"], timeoutSeconds: 5), r.status == 0 {
            parseNftRuleset(r.output, into: &f)
            f.checkedWith.append("nft")
        }
        return f
    }
}

/// Everything the checks look at, gathered once so the checks themselves are pure.
struct GatewayFacts {
    var connected: [KernelRoute] = []
    /// net.ipv4.conf.<name>.rp_filter by interface name, "all" included.
    var rpFilter: [String: Int] = [:]
    /// net.ipv6.conf.<name>.accept_ra for interfaces with IPv6 connected routes.
    var acceptRA: [String: Int] = [:]
    var ipv6ForwardingOn = false
    var firewall = FirewallFacts()
    var interfaceName: (UInt32) -> String? = { Sys.interfaceName($0) }
}

enum GatewayChecks {
    static func run(configuration c: RoutesConfiguration, desired: [DesiredRoute], facts: GatewayFacts) -> [GatewayFinding] {
        var out: [GatewayFinding] = []
        let cidrs = c.podCIDRs + c.serviceCIDRs + c.nodeRoutes.map(\.destination)

        // 1. Overlap with a directly connected subnet: hosts there would ARP for pod IPs
        //    instead of using the gateway, and the kernel would prefer the connected route.
        for conn in facts.connected where conn.destination.prefix > 0 {
            let dev = conn.outputInterface.flatMap(facts.interfaceName) ?? "?"
            for cidr in cidrs where cidr.overlaps(conn.destination) {
                if conn.destination.prefix <= cidr.prefix {
                    out.append(GatewayFinding(
                        severity: .error,
                        message: "\(cidr) lies inside the directly connected subnet \(conn.destination) on \(dev): "
                            + "office hosts would look for pod/service addresses on their own LAN",
                        fix: "pick cluster CIDRs that do not overlap office subnets (kubeadm --pod-network-cidr / --service-cidr)"))
                } else {
                    out.append(GatewayFinding(
                        severity: .note,
                        message: "\(conn.destination) on \(dev) is inside \(cidr); taken to be this node's own pod subnet", fix: nil))
                }
            }
        }

        // 2. Strict reverse-path filtering drops asymmetric paths (office -> gateway -> node,
        //    node -> office directly). The effective value is max(all, interface).
        let all = facts.rpFilter["all"] ?? 0
        var strict: [String] = []
        for (name, value) in facts.rpFilter where name != "all" && name != "default" && name != "lo" {
            if max(all, value) == 1 { strict.append(name) }
        }
        strict.sort()
        if !strict.isEmpty {
            let keys = (all == 1 ? ["all"] : []) + strict.filter { (facts.rpFilter[$0] ?? 0) == 1 }
            out.append(GatewayFinding(
                severity: .warning,
                message: "rp_filter is strict on \(strict.joined(separator: ", ")): packets whose reply path differs "
                    + "from their arrival path are dropped silently",
                fix: "sysctl -w " + keys.map { "net.ipv4.conf.\($0).rp_filter=2" }.joined(separator: " ")
                    + " (loose mode; persist it in /etc/sysctl.d)"))
        }

        // 3. A FORWARD policy of DROP (Docker sets it) stops routing through this node.
        let fw = facts.firewall
        if fw.checkedWith.isEmpty {
            out.append(GatewayFinding(severity: .note,
                                      message: "firewall not checked: neither iptables nor nft could be run", fix: nil))
        } else if !fw.dropPolicies.isEmpty {
            let uncovered = cidrs.filter { !fw.acceptedDestinations.contains($0.description) || !fw.acceptedSources.contains($0.description) }
            if !uncovered.isEmpty {
                let chain = fw.dropPolicies.contains { $0.hasPrefix("iptables") } ? "DOCKER-USER" : "FORWARD"
                let fix = uncovered.map { "iptables -I \(chain) -d \($0) -j ACCEPT; iptables -I \(chain) -s \($0) -j ACCEPT" }
                    .joined(separator: "; ")
                out.append(GatewayFinding(
                    severity: .warning,
                    message: "\(fw.dropPolicies.joined(separator: ", ")): forwarded office traffic to "
                        + "\(uncovered.map(\.description).joined(separator: ", ")) will be dropped",
                    fix: fix + " (DOCKER-USER when Docker runs here, FORWARD otherwise; iptables-persistent keeps it)"))
            }
        }

        // 4. Replies must find their way back to office addresses.
        if !fw.checkedWith.isEmpty {
            if c.via.isEmpty && !c.serviceCIDRs.isEmpty && !fw.hasKubeProxyMasquerade && !fw.hasMasquerade {
                out.append(GatewayFinding(
                    severity: .warning,
                    message: "no masquerade rule found: service IPs answer office clients only if kube-proxy masquerades off-cluster sources",
                    fix: "set kube-proxy's clusterCIDR (--cluster-cidr=\(c.podCIDRs.map(\.description).first ?? "POD-CIDR")) so it masquerades everything else"))
            } else if !c.via.isEmpty && !fw.hasMasquerade {
                let fix = cidrs.map { "iptables -t nat -A POSTROUTING -d \($0) -j MASQUERADE" }.joined(separator: "; ")
                out.append(GatewayFinding(
                    severity: .warning,
                    message: "no masquerade on this gateway: cluster hosts answer office addresses directly, "
                        + "so their routes must lead back here, or replies are lost",
                    fix: fix + " (only if the cluster has no route back to the office)"))
            }
        }

        // 5. Turning IPv6 forwarding on makes interfaces with accept_ra=1 ignore router adverts.
        if desired.contains(where: { $0.destination.address.family == .v6 }) && !facts.ipv6ForwardingOn {
            let affected = facts.acceptRA.filter { $0.value == 1 }.map(\.key).sorted()
            if !affected.isEmpty {
                out.append(GatewayFinding(
                    severity: .warning,
                    message: "turning on IPv6 forwarding makes \(affected.joined(separator: ", ")) ignore router advertisements (accept_ra=1)",
                    fix: "sysctl -w " + affected.map { "net.ipv6.conf.\($0).accept_ra=2" }.joined(separator: " ")))
            }
        }

        // 6. A next hop must be on a directly connected subnet (or a device must be given).
        if c.device == nil {
            for d in desired {
                guard let gw = d.gateway else { continue }
                if !facts.connected.contains(where: { $0.destination.contains(gw) }) {
                    out.append(GatewayFinding(
                        severity: .warning,
                        message: "next hop \(gw) for \(d.destination) is not on a directly connected subnet; the kernel will refuse the route",
                        fix: "use a next hop on this node's LAN, or pass --dev IFACE"))
                }
            }
        }
        return out
    }
}
