import NetAddress

/// The route protocol id that marks a route as kubebridge's (`rtm_protocol`, shown by
/// `ip route` as `proto kubebridge` once conf/rt_protos.d/kubebridge.conf is installed).
///
/// Ownership rests entirely on this number: `withdraw` deletes only routes carrying it, and
/// every delete request carries it too so the kernel itself refuses to remove anything else.
/// 201 is outside the kernel's and iproute2's reserved ids (0-4, 8-18, 42, 99, 186-192),
/// FRR's block (186-198), Calico (80), kube-router (17), BIRD (12) and keepalived (18).
public enum RouteProtocol {
    public static let kubebridge: UInt8 = 201
    public static let name = "kubebridge"

    /// A protocol id as an administrator reads it, for conflict messages.
    static func describe(_ id: UInt8) -> String {
        switch id {
        case 0: return "unspec"
        case 1: return "redirect"
        case 2: return "kernel"
        case 3: return "boot"
        case 4: return "static"
        case 12: return "bird"
        case 16: return "dhcp"
        case 17: return "17 (kube-router)"
        case 18: return "keepalived"
        case 80: return "80 (Calico)"
        case 186: return "bgp"
        case 188: return "ospf"
        case RouteProtocol.kubebridge: return "kubebridge"
        default: return String(id)
        }
    }
}

/// A route as the kernel reports it in a dump or a notification: enough of `rtmsg` and its
/// attributes to decide ownership and sameness, and to print it the way `ip route` would.
struct KernelRoute: Equatable, Sendable {
    var destination: CIDR
    var table: UInt32
    var protocolID: UInt8
    var scope: UInt8
    var type: UInt8
    var gateway: IPAddress?
    var outputInterface: UInt32?
    var priority: UInt32?
    var preferredSource: IPAddress?
    /// Multipath routes (`nexthop via … nexthop via …`) are never ours; we only note them.
    var isMultipath: Bool = false
    /// `rtm_tos` (IPv4) / `rtm_src_len` must be 0 for a route to be one kubebridge could own.
    var tos: UInt8 = 0
    var sourceLength: UInt8 = 0

    var family: IPAddress.Family { destination.address.family }
    var isKubebridge: Bool { protocolID == RouteProtocol.kubebridge }
}

/// A route kubebridge wants installed, after names have been resolved to interface indexes.
/// This is the input of the `RTM_NEWROUTE`/`RTM_DELROUTE` builders.
struct RouteSpec: Hashable, Sendable {
    var destination: CIDR
    var gateway: IPAddress?
    var outputInterface: UInt32?
    var table: UInt32 = RTTable.main
    var protocolID: UInt8 = RouteProtocol.kubebridge
    var priority: UInt32?

    /// `ip route` picks link scope for a route with no gateway and universe otherwise;
    /// the kernel rejects a gateway route with link scope, so we follow the same rule.
    var scope: UInt8 { gateway == nil ? RTScope.link : RTScope.universe }
}

/// Why a route is wanted, for plan output and conflict messages.
public enum RouteOrigin: String, Sendable, Hashable {
    case podCIDR = "pod-cidr"
    case serviceCIDR = "service-cidr"
    case nodeRoute = "node-route"
}

/// One configured route before interface names are resolved.
public struct DesiredRoute: Hashable, Sendable, CustomStringConvertible {
    public var destination: CIDR
    public var gateway: IPAddress?
    public var device: String?
    public var origin: RouteOrigin

    public init(destination: CIDR, gateway: IPAddress?, device: String?, origin: RouteOrigin) {
        self.destination = destination
        self.gateway = gateway
        self.device = device
        self.origin = origin
    }

    public var description: String {
        var s = destination.description
        if let g = gateway { s += " via \(g)" }
        if let d = device { s += " dev \(d)" }
        return s
    }
}
