import DNSWire
import NetAddress

/// What one worker knows about the servers of one plan: whether each answers, how fast,
/// and how often it failed. Passive (every query's outcome counts) plus active probes of
/// servers marked down, so a dead kube-dns replica costs one timeout, not one per query.
/// Per worker, so it is written without locks; the admin endpoint reads it racily.
public final class UpstreamHealth {
    public let plan: ForwardingPlan
    /// Consecutive attempts without any answer; `downAfter` of them mark a server down.
    public internal(set) var consecutiveFailures: [Int]
    public internal(set) var down: [Bool]
    var lastProbe: [UInt64]
    /// Smoothed round-trip time in microseconds (0 = not measured yet).
    public internal(set) var srttMicros: [UInt64]
    public internal(set) var queries: [UInt64]
    public internal(set) var timeouts: [UInt64]
    public internal(set) var errors: [UInt64]
    /// Latency histogram per server, bucket upper bounds in `latencyBucketsMs`.
    public internal(set) var latency: [[UInt64]]
    public internal(set) var latencySumMs: [UInt64]
    /// Queries per server group (zone) and per answer rcode, for metrics.
    public internal(set) var groupQueries: [UInt64]
    /// Pending queries that still refer to this plan (kept alive until 0 after a reload).
    var users = 0

    public static let downAfter = 3
    public static let probeIntervalMs: UInt64 = 2_000
    public static let latencyBucketsMs: [UInt64] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500]

    init(plan: ForwardingPlan) {
        self.plan = plan
        let n = plan.servers.count
        consecutiveFailures = Array(repeating: 0, count: n)
        down = Array(repeating: false, count: n)
        lastProbe = Array(repeating: 0, count: n)
        srttMicros = Array(repeating: 0, count: n)
        queries = Array(repeating: 0, count: n)
        timeouts = Array(repeating: 0, count: n)
        errors = Array(repeating: 0, count: n)
        latency = Array(repeating: Array(repeating: 0, count: UpstreamHealth.latencyBucketsMs.count + 1), count: n)
        latencySumMs = Array(repeating: 0, count: n)
        groupQueries = Array(repeating: 0, count: plan.groups.count)
    }

    func answered(_ server: Int, rttMs: UInt64) {
        consecutiveFailures[server] = 0
        down[server] = false
        let sample = rttMs * 1000
        srttMicros[server] = srttMicros[server] == 0 ? max(sample, 1) : (srttMicros[server] * 7 + sample) / 8
        var b = 0
        while b < UpstreamHealth.latencyBucketsMs.count && rttMs > UpstreamHealth.latencyBucketsMs[b] { b += 1 }
        latency[server][b] += 1
        latencySumMs[server] += rttMs
    }

    func timedOut(_ server: Int, now: UInt64) {
        timeouts[server] += 1
        consecutiveFailures[server] += 1
        if consecutiveFailures[server] >= UpstreamHealth.downAfter && !down[server] {
            down[server] = true
            lastProbe[server] = now   // first probe one interval after it went down
        }
    }

    /// The server refused the query outright (ICMP unreachable): a failure like a timeout
    /// for marking it down, counted as an error rather than a timeout.
    func unreachable(_ server: Int, now: UInt64) {
        errors[server] &+= 1
        consecutiveFailures[server] += 1
        if consecutiveFailures[server] >= UpstreamHealth.downAfter && !down[server] {
            down[server] = true
            lastProbe[server] = now
        }
    }

    /// Position in `group.servers` to try first. Cluster groups go in configured order
    /// (kube-dns replicas are equivalent; order keeps behaviour predictable); other groups
    /// take the fastest server that is up, trying unmeasured ones first.
    func firstChoice(_ g: ServerGroup) -> Int {
        guard !g.servers.isEmpty else { return 0 }
        if g.kind == .cluster {
            return g.servers.firstIndex { !down[$0] } ?? 0
        }
        var best = -1
        for (pos, s) in g.servers.enumerated() where !down[s] {
            if best < 0 || srttMicros[s] < srttMicros[g.servers[best]] { best = pos }
        }
        return max(best, 0)
    }

    /// The next position after `pos` whose server is up, or simply the next one when all are down.
    func next(after pos: Int, in g: ServerGroup) -> Int {
        let n = g.servers.count
        for step in 1...max(1, n) {
            let p = (pos + step) % n
            if !down[g.servers[p]] { return p }
        }
        return (pos + 1) % n
    }

    /// True when every zone (group) has at least one server that is not marked down.
    public var ready: Bool {
        plan.groups.allSatisfy { g in g.servers.contains { !down[$0] } }
    }

    /// A copy for the metrics endpoint, taken on the worker's own thread.
    public var snapshot: Snapshot {
        Snapshot(plan: plan, down: down, srttMicros: srttMicros, queries: queries, timeouts: timeouts, errors: errors,
                 latency: latency, latencySumMs: latencySumMs, groupQueries: groupQueries)
    }

    public struct Snapshot {
        public let plan: ForwardingPlan
        public let down: [Bool]
        public let srttMicros: [UInt64]
        public let queries: [UInt64]
        public let timeouts: [UInt64]
        public let errors: [UInt64]
        public let latency: [[UInt64]]
        public let latencySumMs: [UInt64]
        public let groupQueries: [UInt64]
    }
}
