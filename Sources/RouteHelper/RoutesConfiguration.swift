import NetAddress

/// A per-node route (the host-gw pattern): `172.20.3.0/24=192.168.2.83`.
public struct NodeRoute: Hashable, Sendable, CustomStringConvertible {
    public var destination: CIDR
    public var node: IPAddress

    public init(destination: CIDR, node: IPAddress) {
        self.destination = destination
        self.node = node
    }

    /// Parses `CIDR=ADDR` as given to `--node-route` and in the config file.
    public init(parsing text: String) throws(RouteError) {
        let parts = text.split(separator: "=", omittingEmptySubsequences: false)
        guard parts.count == 2 else {
            throw .invalidConfiguration("node-route '\(text)' is not CIDR=ADDRESS (e.g. 172.20.3.0/24=192.168.2.83)")
        }
        let cidr: CIDR
        do { cidr = try CIDR(parsing: String(parts[0])) } catch {
            throw .invalidConfiguration("node-route '\(text)': \(error)")
        }
        guard let node = IPAddress(parts[1]) else {
            throw .invalidConfiguration("node-route '\(text)': '\(parts[1])' is not an IP address")
        }
        guard node.family == cidr.address.family else {
            throw .invalidConfiguration("node-route '\(text)': the node address and the prefix are of different IP families")
        }
        self.init(destination: cidr, node: node)
    }

    public var description: String { "\(destination)=\(node)" }
}

/// The `[routes]` settings after flags and the config file have been merged.
public struct RoutesConfiguration: Sendable, Equatable {
    public var podCIDRs: [CIDR] = []
    public var serviceCIDRs: [CIDR] = []
    /// Next hops for the pod and service CIDRs, at most one per IP family.
    public var via: [IPAddress] = []
    public var device: String?
    public var table: UInt32 = 254
    public var nodeRoutes: [NodeRoute] = []
    public var sysctlDirectory = "/etc/sysctl.d"
    public var stateDirectory = "/var/lib/kubebridge"
    /// Root of the sysctl tree; only tests change it.
    public var procSysRoot = "/proc/sys"
    public var adopt = false

    public init() {}

    /// The routes to install, or the first reason the configuration cannot work.
    public func desiredRoutes() throws(RouteError) -> [DesiredRoute] {
        var seenFamilies = Set<String>()
        for v in via {
            let key = v.family == .v4 ? "IPv4" : "IPv6"
            if !seenFamilies.insert(key).inserted {
                throw .invalidConfiguration("--via is given twice for \(key); give at most one next hop per IP family")
            }
            if v.isUnspecified || v.isLoopback {
                throw .invalidConfiguration("--via \(v) cannot be a next hop")
            }
        }
        if let d = device, d.isEmpty || d.count > 15 || d.contains("/") || d.contains(" ") {
            throw .invalidConfiguration("--dev '\(d)' is not a valid interface name")
        }
        if podCIDRs.isEmpty && serviceCIDRs.isEmpty && nodeRoutes.isEmpty {
            throw .invalidConfiguration("nothing to route: give --pod-cidr, --service-cidr or --node-route (or a [routes] section with --config)")
        }
        var out: [DesiredRoute] = []
        var seen = Set<CIDR>()
        func add(_ r: DesiredRoute) throws(RouteError) {
            guard r.destination.prefix > 0 else {
                throw .invalidConfiguration("\(r.destination) would replace the default route; kubebridge only routes cluster prefixes")
            }
            guard seen.insert(r.destination).inserted else {
                throw .invalidConfiguration("\(r.destination) is configured twice")
            }
            out.append(r)
        }
        for (cidrs, origin) in [(podCIDRs, RouteOrigin.podCIDR), (serviceCIDRs, RouteOrigin.serviceCIDR)] {
            for cidr in cidrs {
                let gw = via.first { $0.family == cidr.address.family }
                if gw == nil && device == nil {
                    // Host-gw: a pod CIDR fully carried by per-node routes needs no route of its own.
                    if origin == .podCIDR && nodeRoutes.contains(where: { cidr.overlaps($0.destination) }) { continue }
                    let family = cidr.address.family == .v4 ? "an IPv4" : "an IPv6"
                    throw .invalidConfiguration("\(cidr) (\(origin.rawValue)) has no next hop: pass --via with \(family) address, or --dev IFACE")
                }
                try add(DesiredRoute(destination: cidr, gateway: gw, device: device, origin: origin))
            }
        }
        for n in nodeRoutes {
            try add(DesiredRoute(destination: n.destination, gateway: n.node, device: device, origin: .nodeRoute))
        }
        return out
    }
}
