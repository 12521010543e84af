import DNSWire
import NetAddress

/// Which kind of zone a server group answers for. Cluster groups use their servers in
/// order with failover (kube-dns replicas are equivalent) and serve stale answers for a
/// long time, so a kube-dns restart stays invisible; public groups never mix with them.
public enum ZoneKind: String, Sendable {
    case cluster, forward, upstream
}

public struct ServerGroup: Sendable {
    public let name: String
    public let kind: ZoneKind
    /// Indexes into `ForwardingPlan.servers`.
    public let servers: [Int]
    /// Seconds an expired answer may still be served when every server fails (RFC 8767).
    public let staleWindow: UInt32
    /// The question sent to check that a server marked down is back: for a cluster zone
    /// `kubernetes.default.svc.<zone>. A` (every cluster has that service), for others
    /// `<zone>. SOA`, for the public upstreams `. NS`.
    public let probeName: [UInt8]
    public let probeType: UInt16

    public init(name: String, kind: ZoneKind, servers: [Int], staleWindow: UInt32,
                probeName: [UInt8] = [0], probeType: UInt16 = RRType.ns) {
        self.name = name
        self.kind = kind
        self.servers = servers
        self.staleWindow = staleWindow
        self.probeName = probeName
        self.probeType = probeType
    }
}

/// How long answers live in the cache.
public struct CachePolicy: Sendable {
    public var minTTL: UInt32 = 0
    public var maxTTL: UInt32 = 86_400
    /// Negative answers without an SOA to take the TTL from; 0 means "do not cache".
    public var negativeTTLWithoutSOA: UInt32 = 0
    /// Upper bound for negative answers (RFC 2308 suggests hours at most).
    public var maxNegativeTTL: UInt32 = 3_600
    /// SERVFAIL from upstream is remembered this long (RFC 9520: at least 1 s, at most 5 min).
    public var servfailTTL: UInt32 = 2
    /// TTL given to stale answers and how long they are reused before the next upstream try.
    public var staleTTL: UInt32 = 30
    public var prefetch: Bool = true
    /// nginx fails a whole lookup when either its A or its AAAA query errors. When kube-dns
    /// cannot answer an AAAA query but the name's A record is known, answer NODATA instead
    /// of SERVFAIL (cluster zones only; most clusters are IPv4-only anyway).
    public var clusterAAAANodata: Bool = true

    public init() {}
}

/// Everything a worker needs to route and forward, compiled from the configuration once.
/// Immutable and shared by all workers; a reload builds a new one and swaps it in.
public final class ForwardingPlan: @unchecked Sendable {
    public let servers: [Endpoint]
    public let groups: [ServerGroup]
    public let router: ZoneRouter
    public let access: AccessList
    /// Per-attempt wait before the next server is tried.
    public let upstreamTimeoutMs: UInt64
    /// Total time a client waits before it gets SERVFAIL (or a stale answer).
    public let queryTimeoutMs: UInt64
    /// Largest UDP answer sent to clients (RFC 8085/DNS flag day 2020: 1232).
    public let maxUDPSize: UInt16
    /// UDP size advertised to upstream servers.
    public let upstreamUDPSize: UInt16
    public let cache: CachePolicy
    /// Per-client UDP query rate (queries per second, 0 = unlimited) and who is exempt.
    public let rateLimit: RateLimitPolicy

    public init(servers: [Endpoint], groups: [ServerGroup], router: ZoneRouter, access: AccessList,
                upstreamTimeoutMs: UInt64 = 1_500, queryTimeoutMs: UInt64 = 4_000,
                maxUDPSize: UInt16 = 1232, upstreamUDPSize: UInt16 = 1232, cache: CachePolicy = CachePolicy(),
                rateLimit: RateLimitPolicy = RateLimitPolicy()) {
        self.servers = servers
        self.groups = groups
        self.router = router
        self.access = access
        self.upstreamTimeoutMs = upstreamTimeoutMs
        self.queryTimeoutMs = max(queryTimeoutMs, upstreamTimeoutMs)
        self.maxUDPSize = maxUDPSize
        self.upstreamUDPSize = upstreamUDPSize
        self.cache = cache
        self.rateLimit = rateLimit
    }

    /// The zone table as one line per zone, for the start-up log.
    public var zoneSummary: [String] {
        var lines = router.zones.map { z -> String in
            let g = groups[z.group]
            return "\(DNSName.text(z.wire)) -> \(g.servers.map { servers[$0].description }.joined(separator: ",")) (\(g.kind.rawValue))"
        }
        let d = groups[router.defaultGroup]
        lines.append(". -> \(d.servers.map { servers[$0].description }.joined(separator: ",")) (\(d.kind.rawValue))")
        return lines
    }
}

/// Response rate limiting per client over UDP. Off by default: an office forwarder has few,
/// known clients. When on, a client (IPv4 address or IPv6 /64) above `queriesPerSecond`
/// gets every `slip`-th answer as an empty TC=1 reply (a real client retries over TCP, a
/// spoofed victim gets a tiny packet) and the rest dropped. TCP is never limited, and
/// `exempt` prefixes (nginx boxes, proxies that speak for many users) are never limited.
public struct RateLimitPolicy: Sendable {
    public var queriesPerSecond: UInt32 = 0
    public var slip: UInt32 = 2
    public var exempt: [CIDR] = []

    public init(queriesPerSecond: UInt32 = 0, slip: UInt32 = 2, exempt: [CIDR] = []) {
        self.queriesPerSecond = queriesPerSecond
        self.slip = slip
        self.exempt = exempt
    }
}
