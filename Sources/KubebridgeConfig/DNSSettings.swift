import DNSWire
import Forwarding
import NetAddress

/// A zone forwarded to its own servers (`--forward corp.example=192.168.1.10,192.168.1.11:5353`).
public struct ForwardZone: Equatable, Sendable {
    public let zone: String
    public let servers: [Endpoint]

    public init(zone: String, servers: [Endpoint]) {
        self.zone = zone
        self.servers = servers
    }

    /// Parses `ZONE=ADDR[:PORT][,ADDR[:PORT]...]`.
    public init(parsing text: String) throws {
        let parts = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw SettingError("'\(text)' is not ZONE=SERVER[,SERVER...] (e.g. corp.example=192.168.1.10)")
        }
        let zone = String(parts[0])
        _ = try SettingError.wrap { try DNSName.wire(fromText: zone) }
        let servers = try parts[1].split(separator: ",").map { s in
            try SettingError.wrap { try Endpoint(parsing: String(s).trimmed) }
        }
        self.init(zone: zone, servers: servers)
    }
}

public struct SettingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }

    static func wrap<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as SettingError { throw e } catch { throw SettingError("\(error)") }
    }
}

extension String {
    var trimmed: String {
        var s = Substring(self)
        while s.first?.isWhitespace == true { s = s.dropFirst() }
        while s.last?.isWhitespace == true { s = s.dropLast() }
        return String(s)
    }
}

/// Every setting of `kubebridge dns`, with the defaults of the embedded configuration.
/// Field names follow the flags and the `[dns]` keys one to one (`cluster-dns` ↔ `clusterDNS`).
public struct DNSSettings: Sendable {
    public var listen: [Endpoint] = [Endpoint(address: IPAddress(v4: 0x7f00_0001), port: 5353)]
    public var clusterZones: [String] = ["cluster.local"]
    /// kubeadm's default kube-dns service address.
    public var clusterDNS: [Endpoint] = [Endpoint(address: IPAddress(v4: 0x0a60_000a), port: 53)]
    public var podCIDRs: [CIDR] = []
    public var serviceCIDRs: [CIDR] = []
    /// Empty: the nameservers of /etc/resolv.conf, minus kubebridge itself.
    public var upstream: [Endpoint] = []
    public var forward: [ForwardZone] = []
    /// Empty: loopback and the private ranges.
    public var allow: [CIDR] = []
    /// 0: one worker per core.
    public var threads: Int = 0
    public var maxUDPSize: Int = 1232
    public var upstreamTimeoutMs: UInt64 = 1_500
    public var queryTimeoutMs: UInt64 = 4_000
    public var tcpIdleTimeoutMs: UInt64 = 10_000
    public var maxTCPConnections: Int = 1024
    public var cacheSize: Int = 64 << 20
    public var cacheMinTTL: Int = 0
    public var cacheMaxTTL: Int = 86_400
    public var cacheNegativeTTL: Int = 0
    public var cacheServfailTTL: Int = 2
    public var staleTTL: Int = 30
    public var staleWindowCluster: UInt64 = 86_400_000
    public var staleWindowPublic: UInt64 = 0
    public var prefetch: Bool = true
    public var socketBuffer: Int = 4 << 20
    public var resolvConf: String = "/etc/resolv.conf"
    /// Admin listener for /metrics, /healthz, /readyz; off when nil.
    public var admin: Endpoint?
    public var logLevel: String = "info"
    /// Per-client UDP queries per second; 0 = off.
    public var rateLimit: Int = 0
    public var rateLimitExempt: [CIDR] = []
    public var clusterAAAANodata: Bool = true
    /// Upstream UDP sockets per worker and address family, each on a kernel-chosen random
    /// port; each round of queries sent together leaves on a randomly drawn one (RFC 5452).
    /// More sockets: more port entropy; fewer: more answers read per system call.
    public var upstreamSockets: Int = 16
    public var queryLog: Bool = false

    public init() {}

    /// Keys of the `[dns]` table, in the order the reference documents them.
    public static let keys = [
        "listen", "cluster-zone", "cluster-dns", "pod-cidr", "service-cidr", "upstream", "forward", "allow",
        "threads", "max-udp-size", "upstream-timeout", "query-timeout", "tcp-idle-timeout", "max-tcp-connections",
        "cache-size", "cache-min-ttl", "cache-max-ttl", "cache-negative-ttl", "cache-servfail-ttl", "stale-ttl",
        "stale-window-cluster", "stale-window-public", "prefetch", "socket-buffer", "resolv-conf", "admin",
        "log-level", "query-log", "rate-limit", "rate-limit-exempt", "cluster-aaaa-nodata",
        "upstream-sockets",
    ]

    /// Overlays the `[dns]` table of `document` on these settings; returns every problem.
    public mutating func apply(_ document: ConfigDocument) -> [Diagnostic] {
        var r = SectionReader(document: document, table: "dns")
        func each<T>(_ key: String, _ parse: (String) throws -> T) -> [T]? {
            guard let items = r.strings(key) else { return nil }
            var out: [T] = []
            for (s, line) in items {
                do { out.append(try parse(s)) } catch { r.error(line, "\(key): \(error)") }
            }
            return out
        }
        if let v = each("listen", { try Endpoint(parsing: $0) }) { listen = v }
        if let v = each("cluster-zone", { s -> String in _ = try DNSName.wire(fromText: s); return s }) { clusterZones = v }
        if let v = each("cluster-dns", { try Endpoint(parsing: $0) }) { clusterDNS = v }
        if let v = each("pod-cidr", { try CIDR(parsing: $0) }) { podCIDRs = v }
        if let v = each("service-cidr", { try CIDR(parsing: $0) }) { serviceCIDRs = v }
        if let v = each("upstream", { try Endpoint(parsing: $0) }) { upstream = v }
        if let v = each("forward", { try ForwardZone(parsing: $0) }) { forward = v }
        if let v = each("allow", { try CIDR(parsing: $0) }) { allow = v }
        if let v = r.integer("threads", in: 0...256) { threads = v }
        if let v = r.integer("max-udp-size", in: 512...4096) { maxUDPSize = v }
        if let v = r.duration("upstream-timeout", in: 50...60_000) { upstreamTimeoutMs = v }
        if let v = r.duration("query-timeout", in: 100...120_000) { queryTimeoutMs = v }
        if let v = r.duration("tcp-idle-timeout", in: 100...3_600_000) { tcpIdleTimeoutMs = v }
        if let v = r.integer("max-tcp-connections", in: 1...1_000_000) { maxTCPConnections = v }
        if let v = r.size("cache-size", in: (1 << 20)...(1 << 40)) { cacheSize = v }
        if let v = r.integer("cache-min-ttl", in: 0...86_400) { cacheMinTTL = v }
        if let v = r.integer("cache-max-ttl", in: 0...604_800) { cacheMaxTTL = v }
        if let v = r.integer("cache-negative-ttl", in: 0...86_400) { cacheNegativeTTL = v }
        if let v = r.integer("cache-servfail-ttl", in: 0...300) { cacheServfailTTL = v }
        if let v = r.integer("stale-ttl", in: 1...3_600) { staleTTL = v }
        if let v = r.duration("stale-window-cluster", in: 0...(30 * 86_400_000)) { staleWindowCluster = v }
        if let v = r.duration("stale-window-public", in: 0...(30 * 86_400_000)) { staleWindowPublic = v }
        if let v = r.bool("prefetch") { prefetch = v }
        if let v = r.size("socket-buffer", in: 65_536...(256 << 20)) { socketBuffer = v }
        if let (v, _) = r.string("resolv-conf") { resolvConf = v }
        if let (v, line) = r.string("log-level") {
            if ["error", "warning", "warn", "info", "debug"].contains(v) { logLevel = v } else {
                r.error(line, "'log-level' is '\(v)'; use error, warning, info or debug")
            }
        }
        if let v = r.bool("query-log") { queryLog = v }
        if let v = r.integer("rate-limit", in: 0...1_000_000) { rateLimit = v }
        if let v = each("rate-limit-exempt", { try CIDR(parsing: $0) }) { rateLimitExempt = v }
        if let v = r.bool("cluster-aaaa-nodata") { clusterAAAANodata = v }
        if let v = r.integer("upstream-sockets", in: 1...1024) { upstreamSockets = v }
        if let (v, line) = r.string("admin") {
            do { admin = try Endpoint(parsing: v) } catch { r.error(line, "admin: \(error)") }
        }
        r.finish()
        return r.diagnostics
    }

    /// The nameservers of a resolv.conf, without any address kubebridge itself listens on
    /// (forwarding to ourselves would loop). A wildcard listener on port 53 covers every
    /// address of this host, so `localAddresses` (the interfaces' addresses) are excluded then.
    public static func nameservers(resolvConf text: String, excluding listen: [Endpoint],
                                   localAddresses: [IPAddress]) -> [Endpoint] {
        var out: [Endpoint] = []
        for line in text.split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard words.count >= 2, words[0] == "nameserver" else { continue }
            var addr = String(words[1])
            if let pct = addr.firstIndex(of: "%") { addr = String(addr[..<pct]) }   // fe80::1%eth0
            guard let a = IPAddress(addr) else { continue }
            let ep = Endpoint(address: a, port: 53)
            let isSelf = listen.contains { l in
                l.port == 53 && (l.address == a
                    || (l.address.isUnspecified && l.address.family == a.family && (a.isLoopback || localAddresses.contains(a))))
            }
            if !isSelf && !out.contains(ep) { out.append(ep) }
        }
        return out
    }

    public struct PlanError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Compiles the settings into the forwarding plan the workers run. `resolvConfText`
    /// supplies the default upstreams when none are configured.
    public func makePlan(resolvConfText: String?, localAddresses: [IPAddress] = []) throws -> ForwardingPlan {
        var servers: [Endpoint] = []
        func index(_ e: Endpoint) -> Int {
            if let i = servers.firstIndex(of: e) { return i }
            servers.append(e)
            return servers.count - 1
        }
        var ups = upstream
        if ups.isEmpty {
            ups = DNSSettings.nameservers(resolvConf: resolvConfText ?? "", excluding: listen, localAddresses: localAddresses)
            if ups.isEmpty {
                throw PlanError(description: "no upstream servers: set 'upstream' (or --upstream); \(resolvConf) lists none that is not kubebridge itself")
            }
        }
        guard !clusterDNS.isEmpty else { throw PlanError(description: "no cluster DNS servers: set 'cluster-dns' (or --cluster-dns)") }
        let staleCluster = UInt32(staleWindowCluster / 1000)
        let stalePublic = UInt32(staleWindowPublic / 1000)
        let clusterProbe = (try? DNSName.wire(fromText: "kubernetes.default.svc." + (clusterZones.first ?? "cluster.local"))) ?? [0]
        var groups: [ServerGroup] = [
            ServerGroup(name: "upstream", kind: .upstream, servers: ups.map(index), staleWindow: stalePublic),
            ServerGroup(name: "cluster", kind: .cluster, servers: clusterDNS.map(index), staleWindow: staleCluster,
                        probeName: clusterProbe, probeType: RRType.a),
        ]
        let router = ZoneRouter(defaultGroup: 0)
        func add(_ zone: String, _ group: Int) throws {
            do { try router.add(zone: try DNSName.wire(fromText: zone), group: group) } catch {
                throw PlanError(description: "\(error)")
            }
        }
        for z in clusterZones { try add(z, 1) }
        for c in podCIDRs + serviceCIDRs {
            for z in ReverseZones.zones(for: c) where !router.zones.contains(where: { DNSName.text($0.wire) == z + "." }) {
                try add(z, 1)
            }
        }
        for f in forward {
            groups.append(ServerGroup(name: f.zone, kind: .forward, servers: f.servers.map(index), staleWindow: stalePublic,
                                      probeName: (try? DNSName.wire(fromText: f.zone)) ?? [0], probeType: RRType.soa))
            try add(f.zone, groups.count - 1)
        }
        var policy = CachePolicy()
        policy.minTTL = UInt32(cacheMinTTL)
        policy.maxTTL = UInt32(cacheMaxTTL)
        policy.negativeTTLWithoutSOA = UInt32(cacheNegativeTTL)
        policy.servfailTTL = UInt32(cacheServfailTTL)
        policy.staleTTL = UInt32(staleTTL)
        policy.prefetch = prefetch
        policy.clusterAAAANodata = clusterAAAANodata
        let access = allow.isEmpty ? AccessList.standard : AccessList(allow)
        return ForwardingPlan(servers: servers, groups: groups, router: router, access: access,
                              upstreamTimeoutMs: upstreamTimeoutMs, queryTimeoutMs: queryTimeoutMs,
                              maxUDPSize: UInt16(maxUDPSize), cache: policy,
                              rateLimit: RateLimitPolicy(queriesPerSecond: UInt32(rateLimit), exempt: rateLimitExempt))
    }
}

/// Zone-name validation for callers that do not import the wire format.
public enum ZoneText {
    public static func wire(_ text: String) throws -> [UInt8] { try DNSName.wire(fromText: text) }
}
