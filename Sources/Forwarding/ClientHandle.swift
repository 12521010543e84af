import NetAddress

/// How a query arrived, so its answer can go back the same way.
public enum Transport: UInt8, Sendable {
    case udp, tcp
}

/// Where an answer goes. The forwarder treats it as an opaque value that it stores with
/// each waiting client and hands back to the event loop; the loop packs its socket
/// addresses into `storage`. Plain bytes, no references: storing one allocates nothing.
public struct ClientHandle: Sendable {
    public var transport: Transport = .udp
    /// UDP: listener socket index. TCP: connection slot.
    public var slot: UInt32 = 0
    /// TCP: connection generation, so an answer never reaches a later connection in the same slot.
    public var generation: UInt32 = 0
    public var storage: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)

    public init() {}
}

/// What the forwarder asks the event loop to do. A generic parameter, not an
/// existential: the calls are resolved at compile time and nothing is boxed per query.
/// Where an answer came from, for the query log.
public struct AnswerOrigin: Sendable {
    public enum Kind: UInt8, Sendable { case cache, upstream, stale, local }
    public var kind: Kind
    /// The server that answered (upstream answers only).
    public var server: Endpoint?
    public var latencyMs: UInt64

    public static let cache = AnswerOrigin(kind: .cache, server: nil, latencyMs: 0)
    public static let local = AnswerOrigin(kind: .local, server: nil, latencyMs: 0)

    public init(kind: Kind, server: Endpoint?, latencyMs: UInt64) {
        self.kind = kind
        self.server = server
        self.latencyMs = latencyMs
    }
}

/// Things a sysadmin wants in the log, reported by the forwarder as they happen.
public enum ForwarderEvent: Sendable {
    case serverDown(Endpoint, zone: String)
    case serverUp(Endpoint, zone: String)
}

public protocol ForwarderIO {
    /// Send an answer to a client. `origin` feeds the optional query log.
    mutating func reply(_ client: ClientHandle, _ bytes: UnsafeRawPointer, _ count: Int, origin: AnswerOrigin)
    /// Something worth a log line happened (rare: state changes only).
    mutating func event(_ e: ForwarderEvent)
    /// Send a query to upstream `server` from upstream UDP socket number `socket`.
    mutating func sendUDP(socket: Int, to server: Endpoint, _ bytes: UnsafeRawPointer, _ count: Int)
    /// Send a query to `server` over TCP; answer with `Forwarder.handleTCPResponse(token:…)`
    /// or `Forwarder.tcpFailed(token:…)`.
    mutating func sendTCP(to server: Endpoint, token: UInt64, _ bytes: UnsafeRawPointer, _ count: Int)
}

/// A small, fast generator (xoshiro256**) for query IDs and socket choice. Seeded from
/// getrandom(2) by the event loop and from fixed values by replay tests.
public struct FastRandom: Sendable {
    @usableFromInline var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var x = seed
        func next() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (next(), next(), next(), next())
    }

    @inlinable
    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }
}

/// Per-worker counters, written only by the worker's own thread and read racily (one
/// word at a time) by the metrics scraper: no locks, no atomics on the query path.
public struct ForwarderCounters: Sendable {
    public var queriesUDP: UInt64 = 0
    public var queriesTCP: UInt64 = 0
    public var cacheHits: UInt64 = 0
    public var cacheMisses: UInt64 = 0
    public var staleServed: UInt64 = 0
    public var coalesced: UInt64 = 0
    public var prefetches: UInt64 = 0
    public var upstreamQueries: UInt64 = 0
    public var upstreamTimeouts: UInt64 = 0
    public var upstreamErrors: UInt64 = 0
    public var tcpFallbacks: UInt64 = 0
    /// Upstream attempts failed at once by an ICMP error (port or host unreachable).
    public var upstreamUnreachable: UInt64 = 0
    /// Timed-out UDP attempts sent again to the same server with the same ID.
    public var retransmissions: UInt64 = 0
    /// Responses that failed the ID/source/question checks (possible spoofing).
    public var mismatched: UInt64 = 0
    public var servfail: UInt64 = 0
    public var formerr: UInt64 = 0
    public var refused: UInt64 = 0
    public var dropped: UInt64 = 0
    public var overloaded: UInt64 = 0
    public var truncated: UInt64 = 0
    /// Queries sent to check whether a server marked down is back.
    public var probes: UInt64 = 0
    /// UDP queries over a client's rate limit (dropped or answered TC=1).
    public var rateLimited: UInt64 = 0
    /// AAAA queries of cluster names answered NODATA because kube-dns failed them.
    public var synthesizedNodata: UInt64 = 0

    public init() {}
}
