import CLibevent
import DNSWire
import Forwarding
import Glibc
import NetAddress

/// The admin listener: `/metrics` (Prometheus text format 0.0.4), `/healthz` (every event
/// loop turned within the last 2 s) and `/readyz` (every zone has a server that is up).
/// It runs on its own thread with its own event base, asks the workers for snapshots
/// (taken on their threads) and never touches the query path.
public final class AdminServer {
    let dns: DNSServer
    let base: EventBase
    let listenFD: Int32
    var acceptEvent: OpaquePointer?
    var stopEvent: OpaquePointer?
    let stopFD: Int32
    var thread = pthread_t()
    public let endpoint: Endpoint
    var zoneNames: [Int: String] = [:]

    public init(endpoint: Endpoint, dns: DNSServer) throws {
        self.dns = dns
        self.endpoint = endpoint
        base = try EventBase()
        stopFD = try Sys.eventfd()
        let fd = try Sys.socket(endpoint.address.family == .v4 ? AF_INET : AF_INET6, Int32(SOCK_STREAM.rawValue))
        try Sys.setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR")
        try Sys.bind(fd, SocketAddress(endpoint))
        try Sys.listen(fd, 64)
        listenFD = fd
    }

    public func start() throws {
        let arg = Unmanaged.passUnretained(self).toOpaque()
        let a = base.event(fd: listenFD, flags: Event.read | Event.persist, { _, _, arg in
            Unmanaged<AdminServer>.fromOpaque(arg!).takeUnretainedValue().onAcceptable()
        }, arg)
        acceptEvent = a
        Event.add(a)
        let s = base.event(fd: stopFD, flags: Event.read | Event.persist, { _, _, arg in
            Unmanaged<AdminServer>.fromOpaque(arg!).takeUnretainedValue().base.stop()
        }, arg)
        stopEvent = s
        Event.add(s)
        let r = pthread_create(&thread, nil, { arg in
            Unmanaged<AdminServer>.fromOpaque(arg!).takeUnretainedValue().base.run()
            return nil
        }, Unmanaged.passUnretained(self).toOpaque())
        if r != 0 { throw SystemError("pthread_create", r) }
    }

    public func stop() {
        Sys.signalEventfd(stopFD)
        pthread_join(thread, nil)
        if let a = acceptEvent { Event.free(a) }
        if let s = stopEvent { Event.free(s) }
        Sys.close(listenFD)
        Sys.close(stopFD)
    }

    func onAcceptable() {
        var peer = SocketAddress()
        while let r = try? Sys.accept(listenFD, peer: &peer), case .done(let fd) = r {
            serve(Int32(fd))
        }
    }

    /// One request per connection, answered at once: the admin port sees a scrape every
    /// few seconds, so a blocking exchange with a 2 s limit is simpler than a state machine.
    func serve(_ fd: Int32) {
        defer { Sys.close(fd) }
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags & ~Int32(O_NONBLOCK))
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var request: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 2048)
        while request.count < 8192 {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n <= 0 { break }
            request += buf[..<n]
            if request.count >= 4 && request.suffix(4) == [13, 10, 13, 10] { break }
            if let text = String(validating: request, as: UTF8.self), text.contains("\r\n\r\n") || text.contains("\n\n") { break }
        }
        let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self)
        let parts = line.split(separator: " ")
        let (status, type, body): (String, String, String)
        if parts.count < 2 || (parts[0] != "GET" && parts[0] != "HEAD") {
            (status, type, body) = ("405 Method Not Allowed", "text/plain", "only GET\n")
        } else {
            let path = parts[1].split(separator: "?").first.map(String.init) ?? "/"
            (status, type, body) = respond(path)
        }
        let head = "HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
        let out = Array((parts.first == "HEAD" ? head : head + body).utf8)
        var sent = 0
        while sent < out.count {
            let n = out.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            sent += n
        }
    }

    func respond(_ path: String) -> (String, String, String) {
        switch path {
        case "/healthz":
            return dns.loopsTurning(withinMs: 2000) ? ("200 OK", "text/plain", "ok\n")
                : ("503 Service Unavailable", "text/plain", "an event loop is stuck\n")
        case "/readyz":
            let snaps = dns.snapshots(timeoutMs: 1000)
            guard snaps.allSatisfy({ $0 != nil }) else { return ("503 Service Unavailable", "text/plain", "an event loop is stuck\n") }
            let missing = AdminServer.zonesWithoutUpstream(snaps.compactMap { $0 })
            return missing.isEmpty ? ("200 OK", "text/plain", "ok\n")
                : ("503 Service Unavailable", "text/plain", "no server up for: \(missing.joined(separator: ", "))\n")
        case "/metrics":
            return ("200 OK", "text/plain; version=0.0.4; charset=utf-8", MetricsText.render(dns: dns, snapshots: dns.snapshots(timeoutMs: 1000)))
        default:
            return ("404 Not Found", "text/plain", "try /metrics, /healthz or /readyz\n")
        }
    }

    /// Zones for which every worker sees every server down.
    static func zonesWithoutUpstream(_ snaps: [WorkerSnapshot]) -> [String] {
        guard let plan = snaps.first?.health?.plan else { return [] }
        var missing: [String] = []
        for g in plan.groups {
            let anyUp = g.servers.contains { s in snaps.contains { $0.health?.plan === plan && $0.health?.down[s] == false } }
            if !anyUp { missing.append(g.name) }
        }
        return missing
    }
}

/// Renders worker snapshots in the Prometheus text exposition format. Counters are summed
/// over workers at scrape time; nothing is aggregated on the query path.
public enum MetricsText {
    static let rcodeNames = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
                             "NXRRSET", "NOTAUTH", "NOTZONE", "DSOTYPENI", "RCODE12", "RCODE13", "RCODE14", "RCODE15"]

    public static func render(dns: DNSServer, snapshots: [WorkerSnapshot?]) -> String {
        let snaps = snapshots.compactMap { $0 }
        var out = ""
        func metric(_ name: String, _ type: String, _ help: String, _ samples: [(String, Double)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for (labels, v) in samples {
                let value = v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v)
                out += labels.isEmpty ? "\(name) \(value)\n" : "\(name){\(labels)} \(value)\n"
            }
        }
        func sum(_ f: (ForwarderCounters) -> UInt64) -> Double { Double(snaps.reduce(0) { $0 + f($1.counters) }) }

        metric("kubebridge_workers", "gauge", "Worker threads (event loops).", [("", Double(dns.workerCount))])
        metric("kubebridge_workers_responding", "gauge", "Workers whose loop answered the scrape within 1 s.", [("", Double(snaps.count))])
        metric("kubebridge_queries_total", "counter", "Client queries received, by transport.",
               [("proto=\"udp\"", sum { $0.queriesUDP }), ("proto=\"tcp\"", sum { $0.queriesTCP })])
        var rc: [(String, Double)] = []
        for i in 0..<16 {
            let v = snaps.reduce(0) { $0 + $1.rcodes[i] }
            if v > 0 || i <= 5 { rc.append(("rcode=\"\(rcodeNames[i])\"", Double(v))) }
        }
        metric("kubebridge_responses_total", "counter", "Answers sent to clients, by rcode.", rc)
        if let plan = snaps.first?.health?.plan {
            var zones: [(String, Double)] = []
            for (gi, g) in plan.groups.enumerated() {
                let v = snaps.reduce(0) { $0 + (($1.health?.plan === plan) ? $1.health!.groupQueries[gi] : 0) }
                zones.append(("zone=\"\(escape(g.name))\",kind=\"\(g.kind.rawValue)\"", Double(v)))
            }
            metric("kubebridge_zone_upstream_queries_total", "counter", "Queries started upstream, by zone (server group).", zones)
        }
        metric("kubebridge_cache_hits_total", "counter", "Answers served from the cache.", [("", sum { $0.cacheHits })])
        metric("kubebridge_cache_misses_total", "counter", "Queries not answered from the cache.", [("", sum { $0.cacheMisses })])
        metric("kubebridge_cache_stale_served_total", "counter", "Answers served stale (RFC 8767).", [("", sum { $0.staleServed })])
        metric("kubebridge_cache_coalesced_total", "counter", "Misses that joined an identical query in flight.", [("", sum { $0.coalesced })])
        metric("kubebridge_cache_prefetches_total", "counter", "Background refreshes of entries near expiry.", [("", sum { $0.prefetches })])
        let cs = dns.cache.statistics
        metric("kubebridge_cache_evictions_total", "counter", "Entries evicted to make room.", [("", Double(cs.evictions))])
        metric("kubebridge_cache_entries", "gauge", "Answers in the cache.", [("", Double(cs.entries))])
        metric("kubebridge_cache_bytes", "gauge", "Bytes used by cached answers and their headers.", [("", Double(cs.bytes))])
        metric("kubebridge_cache_capacity_bytes", "gauge", "Configured cache memory.", [("", Double(dns.cache.capacityBytes))])
        metric("kubebridge_cache_contended_total", "counter", "Lookups or inserts skipped because a shard was busy.", [("", Double(cs.contended))])
        metric("kubebridge_upstream_tcp_fallbacks_total", "counter", "Upstream answers with TC=1 retried over TCP.", [("", sum { $0.tcpFallbacks })])
        metric("kubebridge_upstream_unreachable_total", "counter", "Upstream attempts failed at once by an ICMP unreachable.", [("", sum { $0.upstreamUnreachable })])
        metric("kubebridge_upstream_retransmissions_total", "counter", "Timed-out queries sent again to the same server with the same ID.", [("", sum { $0.retransmissions })])
        metric("kubebridge_upstream_mismatched_total", "counter", "Upstream packets rejected (wrong ID, source or question).", [("", sum { $0.mismatched })])
        metric("kubebridge_upstream_probes_total", "counter", "Health probes sent to servers marked down.", [("", sum { $0.probes })])
        if let plan = snaps.first?.health?.plan {
            let same = snaps.compactMap { $0.health }.filter { $0.plan === plan }
            var queries: [(String, Double)] = [], timeouts: [(String, Double)] = [], errors: [(String, Double)] = [], up: [(String, Double)] = []
            var histogram = ""
            for (si, server) in plan.servers.enumerated() {
                let label = "server=\"\(server)\""
                queries.append((label, Double(same.reduce(0) { $0 + $1.queries[si] })))
                timeouts.append((label, Double(same.reduce(0) { $0 + $1.timeouts[si] })))
                errors.append((label, Double(same.reduce(0) { $0 + $1.errors[si] })))
                up.append((label, same.contains { !$0.down[si] } ? 1 : 0))
                var cumulative: UInt64 = 0
                for (b, le) in UpstreamHealth.latencyBucketsMs.enumerated() {
                    cumulative += same.reduce(0) { $0 + $1.latency[si][b] }
                    histogram += "kubebridge_upstream_latency_seconds_bucket{\(label),le=\"\(Double(le) / 1000)\"} \(cumulative)\n"
                }
                cumulative += same.reduce(0) { $0 + $1.latency[si][UpstreamHealth.latencyBucketsMs.count] }
                histogram += "kubebridge_upstream_latency_seconds_bucket{\(label),le=\"+Inf\"} \(cumulative)\n"
                histogram += "kubebridge_upstream_latency_seconds_sum{\(label)} \(Double(same.reduce(0) { $0 + $1.latencySumMs[si] }) / 1000)\n"
                histogram += "kubebridge_upstream_latency_seconds_count{\(label)} \(cumulative)\n"
            }
            metric("kubebridge_upstream_queries_total", "counter", "Queries sent to each upstream server.", queries)
            metric("kubebridge_upstream_timeouts_total", "counter", "Upstream attempts that got no answer in time.", timeouts)
            metric("kubebridge_upstream_errors_total", "counter", "Upstream answers that were SERVFAIL, REFUSED, NOTIMP or malformed.", errors)
            metric("kubebridge_upstream_up", "gauge", "1 when the server is not marked down.", up)
            out += "# HELP kubebridge_upstream_latency_seconds Upstream round-trip time of answered queries.\n"
            out += "# TYPE kubebridge_upstream_latency_seconds histogram\n" + histogram
        }
        metric("kubebridge_tcp_connections", "gauge", "Open client TCP connections.", [("", Double(snaps.reduce(0) { $0 + $1.tcpConnections }))])
        metric("kubebridge_tcp_accepted_total", "counter", "Client TCP connections accepted.", [("", Double(snaps.reduce(0) { $0 + $1.tcpAccepted }))])
        metric("kubebridge_tcp_paused_total", "counter", "Times a TCP client's queries were left unread until it read its answers.", [("", Double(snaps.reduce(0) { $0 + $1.tcpPaused }))])
        metric("kubebridge_tcp_evicted_total", "counter", "Idle TCP connections closed to make room at the cap.", [("", Double(snaps.reduce(0) { $0 + $1.tcpEvicted }))])
        metric("kubebridge_dropped_total", "counter", "Packets not answered, by reason.",
               [("reason=\"malformed\"", sum { $0.dropped }), ("reason=\"overload\"", sum { $0.overloaded }),
                ("reason=\"send_failed\"", Double(snaps.reduce(0) { $0 + $1.droppedReplies }))])
        metric("kubebridge_refused_total", "counter", "Queries refused (access list, zone transfers).", [("", sum { $0.refused })])
        metric("kubebridge_rate_limited_total", "counter", "UDP queries over a client's rate limit (dropped or answered TC=1).",
               [("", sum { $0.rateLimited })])
        metric("kubebridge_nodata_synthesized_total", "counter", "Failed cluster AAAA queries answered NODATA because the A answer is known.",
               [("", sum { $0.synthesizedNodata })])
        metric("kubebridge_formerr_total", "counter", "Malformed queries answered FORMERR.", [("", sum { $0.formerr })])
        metric("kubebridge_truncated_total", "counter", "UDP answers cut to fit the client's size (TC=1).", [("", sum { $0.truncated })])
        metric("kubebridge_queries_in_flight", "gauge", "Upstream queries in flight.", [("", Double(snaps.reduce(0) { $0 + $1.inFlight }))])
        return out
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    }
}

extension String {
    func replacingOccurrences(of a: String, with b: String) -> String {
        var out = ""
        var rest = Substring(self)
        while let r = rest.range(of: a) {
            out += rest[..<r.lowerBound] + b
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}

extension Substring {
    func range(of s: String) -> Range<Substring.Index>? {
        guard !s.isEmpty else { return nil }
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(s) { return i..<index(i, offsetBy: s.count) }
            i = index(after: i)
        }
        return nil
    }
}
