import XCTest
import DNSWire
import NetAddress
import PacketCache
@testable import Forwarding

/// Records what the forwarder asked the event loop to do.
struct RecordingIO: ForwarderIO {
    struct Sent { let socket: Int; let server: Endpoint; let bytes: [UInt8] }
    var replies: [(ClientHandle, [UInt8])] = []
    var udp: [Sent] = []
    var tcp: [(server: Endpoint, token: UInt64, bytes: [UInt8])] = []
    var origins: [AnswerOrigin.Kind] = []
    var events: [String] = []

    mutating func reply(_ client: ClientHandle, _ bytes: UnsafeRawPointer, _ count: Int, origin: AnswerOrigin) {
        replies.append((client, Array(UnsafeRawBufferPointer(start: bytes, count: count))))
        origins.append(origin.kind)
    }
    mutating func event(_ e: ForwarderEvent) {
        switch e {
        case .serverDown(let s, let zone): events.append("down \(s) \(zone)")
        case .serverUp(let s, let zone): events.append("up \(s) \(zone)")
        }
    }
    mutating func sendUDP(socket: Int, to server: Endpoint, _ bytes: UnsafeRawPointer, _ count: Int) {
        udp.append(Sent(socket: socket, server: server, bytes: Array(UnsafeRawBufferPointer(start: bytes, count: count))))
    }
    mutating func sendTCP(to server: Endpoint, token: UInt64, _ bytes: UnsafeRawPointer, _ count: Int) {
        tcp.append((server, token, Array(UnsafeRawBufferPointer(start: bytes, count: count))))
    }
}

func wire(_ s: String) -> [UInt8] { try! DNSName.wire(fromText: s) }

/// Wire form keeping the letters' case, as a client's query carries it.
func casedWire(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    for label in s.split(separator: ".") { out.append(UInt8(label.utf8.count)); out += Array(label.utf8) }
    return out + [0]
}

func buildMessage(id: UInt16, flags: UInt16, _ body: (inout MessageBuilder) -> Void) -> [UInt8] {
    var storage = [UInt8](repeating: 0, count: 8192)
    return storage.withUnsafeMutableBytes { raw -> [UInt8] in
        var b = MessageBuilder(buffer: raw.baseAddress!, capacity: raw.count, id: id, flags: flags)
        body(&b)
        return b.bytes
    }
}

func query(_ name: String, type: UInt16 = RRType.a, id: UInt16, flags: UInt16 = Header.rd, edns: UInt16? = nil) -> [UInt8] {
    buildMessage(id: id, flags: flags) { b in
        b.question(casedWire(name), type: type)
        if let e = edns { b.opt(udpSize: e, dnssecOK: false) }
    }
}

/// Scripted scenarios against the I/O-free forwarder, with a fake clock: the same way
/// Unbound's replay tests drive its iterator.
final class ForwarderReplayTests: XCTestCase {
    let cluster = Endpoint(address: IPAddress("127.0.0.10")!, port: 53)
    let cluster2 = Endpoint(address: IPAddress("127.0.0.11")!, port: 53)
    let upstream = Endpoint(address: IPAddress("127.0.0.20")!, port: 5300)
    let client = IPAddress("192.168.1.50")!
    var io = RecordingIO()
    var now: UInt64 = 1_000_000

    func makeForwarder(clusterServers: [Endpoint]? = nil, allow: [String]? = nil, staleWindow: UInt32 = 86_400) throws -> Forwarder {
        let cs = clusterServers ?? [cluster]
        var servers = [upstream]
        servers += cs
        let router = ZoneRouter(defaultGroup: 0)
        try router.add(zone: wire("cluster.local"), group: 1)
        try router.add(zone: wire("20.172.in-addr.arpa"), group: 1)
        let groups = [
            ServerGroup(name: "upstream", kind: .upstream, servers: [0], staleWindow: 0),
            ServerGroup(name: "cluster", kind: .cluster, servers: Array(1...cs.count), staleWindow: staleWindow,
                        probeName: wire("kubernetes.default.svc.cluster.local"), probeType: RRType.a),
        ]
        let access = allow.map { AccessList($0.map { try! CIDR(parsing: $0) }) } ?? AccessList.standard
        let plan = ForwardingPlan(servers: servers, groups: groups, router: router, access: access,
                                  upstreamTimeoutMs: 1000, queryTimeoutMs: 3000)
        return Forwarder(plan: plan, cache: PacketCache(capacityBytes: 1 << 20, shardCount: 2),
                         random: FastRandom(seed: 7), maxPending: 64, maxWaiters: 256, upstreamSockets: 4)
    }

    func handle(_ f: Forwarder, _ q: [UInt8], slot: UInt32 = 0, transport: Transport = .udp, from: IPAddress? = nil) {
        var m = q
        var c = ClientHandle()
        c.transport = transport
        c.slot = slot
        m.withUnsafeMutableBytes { f.handleQuery($0.baseAddress!, count: $0.count, client: c, source: from ?? client, now: now, io: &io) }
    }

    /// Answers the upstream query `sent` with records built by `body`, from `source`.
    func respond(_ f: Forwarder, to sent: RecordingIO.Sent, from source: Endpoint? = nil, rcode: UInt16 = 0,
                 flags extra: UInt16 = 0, id: UInt16? = nil, name: String? = nil,
                 _ body: (inout MessageBuilder, [UInt8]) -> Void = { _, _ in }) {
        let info = sent.bytes.withUnsafeBytes { QueryParser.parse($0.baseAddress!, count: $0.count) }
        let qname = name.map(wire) ?? Array(sent.bytes[12..<(12 + info.nameLength)])
        var r = buildMessage(id: id ?? info.id, flags: Header.qr | Header.rd | Header.ra | rcode | extra) { b in
            b.question(qname, type: info.qtype)
            body(&b, qname)
            b.opt(udpSize: 1232, dnssecOK: false)
        }
        let src = source ?? sent.server
        r.withUnsafeMutableBytes {
            f.handleUDPResponse($0.baseAddress!, count: $0.count, socket: sent.socket, source: src.address, port: src.port, now: now, io: &io)
        }
    }

    func parse(_ m: [UInt8]) -> ResponseInfo { m.withUnsafeBytes { ResponseParser.parse($0.baseAddress!, count: $0.count) } }

    func testMissForwardsToZoneServerThenHitsCache() throws {
        let f = try makeForwarder()
        handle(f, query("Web.Prod.svc.Cluster.Local", id: 0x1111))
        XCTAssertEqual(io.udp.count, 1)
        XCTAssertEqual(io.udp[0].server, cluster)
        let up = parse(io.udp[0].bytes)
        XCTAssertNotEqual(up.id, 0x1111, "upstream ID is fresh and random")
        respond(f, to: io.udp[0]) { b, n in b.record(.answer, owner: n, type: 1, ttl: 30, rdata: [172, 21, 0, 10]) }
        XCTAssertEqual(io.replies.count, 1)
        let a = io.replies[0].1
        XCTAssertEqual(Wire.u16(a.withUnsafeBytes { $0.baseAddress! }, 0), 0x1111)
        XCTAssertEqual(Array(a[12..<40]), casedWire("Web.Prod.svc.Cluster.Local"), "client's spelling restored")
        XCTAssertEqual(Array(io.udp[0].bytes[12..<40]), wire("web.prod.svc.cluster.local"), "upstream gets one spelling")
        XCTAssertEqual(parse(a).optStart, -1, "no OPT for a client that sent none")
        now += 10_000
        handle(f, query("web.prod.svc.cluster.local", id: 0x2222))
        XCTAssertEqual(io.udp.count, 1, "second query answered from cache")
        XCTAssertEqual(io.replies.count, 2)
        XCTAssertEqual(parse(io.replies[1].1).minTTL, 20, "TTL aged by 10 s")
        XCTAssertEqual(f.counters.cacheHits, 1)
        XCTAssertEqual(io.origins, [.upstream, .cache])
    }

    func testPublicNamesGoUpstreamAndReverseZonesToCluster() throws {
        let f = try makeForwarder()
        handle(f, query("www.example.test", id: 1))
        handle(f, query("5.3.20.172.in-addr.arpa", type: RRType.ptr, id: 2))
        handle(f, query("notcluster.local", id: 3))
        XCTAssertEqual(io.udp.map { $0.server }, [upstream, cluster, upstream])
    }

    func testIdenticalMissesCoalesce() throws {
        let f = try makeForwarder()
        for i in 0..<100 { handle(f, query(i % 2 == 0 ? "svc.cluster.local" : "SVC.cluster.local", id: UInt16(100 + i))) }
        XCTAssertEqual(io.udp.count, 1)
        XCTAssertEqual(f.counters.coalesced, 99)
        respond(f, to: io.udp[0]) { b, n in b.record(.answer, owner: n, type: 1, ttl: 30, rdata: [1, 2, 3, 4]) }
        XCTAssertEqual(io.replies.count, 100)
        let ids = Set(io.replies.map { Wire.u16($0.1.withUnsafeBytes { $0.baseAddress! }, 0) })
        XCTAssertEqual(ids, Set((0..<100).map { UInt16(100 + $0) }))
        for (_, r) in io.replies {
            let id = Wire.u16(r.withUnsafeBytes { $0.baseAddress! }, 0)
            XCTAssertEqual(r[13], id % 2 == 0 ? UInt8(ascii: "s") : UInt8(ascii: "S"), "each waiter gets its own spelling")
        }
    }

    func testSpoofedRepliesAreIgnored() throws {
        let f = try makeForwarder()
        handle(f, query("www.example.test", id: 9))
        let sent = io.udp[0]
        respond(f, to: sent, from: Endpoint(address: upstream.address, port: 5301)) { b, n in b.record(.answer, owner: n, type: 1, ttl: 60, rdata: [6, 6, 6, 6]) }
        respond(f, to: sent, from: Endpoint(address: IPAddress("127.0.0.99")!, port: 5300)) { b, n in b.record(.answer, owner: n, type: 1, ttl: 60, rdata: [6, 6, 6, 6]) }
        respond(f, to: sent, id: parse(sent.bytes).id &+ 1) { b, n in b.record(.answer, owner: n, type: 1, ttl: 60, rdata: [6, 6, 6, 6]) }
        respond(f, to: sent, name: "evil.example.test") { b, n in b.record(.answer, owner: n, type: 1, ttl: 60, rdata: [6, 6, 6, 6]) }
        XCTAssertEqual(io.replies.count, 0)
        XCTAssertEqual(f.counters.mismatched, 4)
        respond(f, to: sent) { b, n in b.record(.answer, owner: n, type: 1, ttl: 60, rdata: [192, 0, 2, 7]) }
        XCTAssertEqual(io.replies.count, 1)
        XCTAssertEqual(Array(io.replies[0].1.suffix(4)), [192, 0, 2, 7])
    }

    func testTimeoutFailsOverThenSERVFAILWithinBudget() throws {
        let f = try makeForwarder(clusterServers: [cluster, cluster2])
        handle(f, query("a.cluster.local", id: 5))
        XCTAssertEqual(io.udp[0].server, cluster)
        now += 999
        f.expire(now: now, io: &io)
        XCTAssertEqual(io.udp.count, 1)
        now += 1
        f.expire(now: now, io: &io)
        XCTAssertEqual(io.udp.count, 2)
        XCTAssertEqual(io.udp[1].server, cluster2, "next server after a timeout")
        now += 1000; f.expire(now: now, io: &io)
        XCTAssertEqual(io.udp.count, 3)
        XCTAssertEqual(io.replies.count, 0)
        now += 1000; f.expire(now: now, io: &io)
        XCTAssertEqual(io.replies.count, 1, "SERVFAIL once the 3 s budget is spent")
        XCTAssertEqual(parse(io.replies[0].1).rcode, RCode.servFail.rawValue)
        XCTAssertEqual(f.inFlight, 0)
    }

    func testFailureIsRememberedBriefly() throws {
        let f = try makeForwarder()
        handle(f, query("broken.example.test", id: 1))
        respond(f, to: io.udp[0], rcode: RCode.servFail.rawValue)
        XCTAssertEqual(parse(io.replies[0].1).rcode, RCode.servFail.rawValue)
        now += 1000
        handle(f, query("broken.example.test", id: 2))
        XCTAssertEqual(io.udp.count, 1, "SERVFAIL cached for cache-servfail-ttl (2 s)")
        XCTAssertEqual(parse(io.replies[1].1).rcode, RCode.servFail.rawValue)
        XCTAssertEqual(Wire.u16(io.replies[1].1.withUnsafeBytes { $0.baseAddress! }, 0), 2)
        now += 1500
        handle(f, query("broken.example.test", id: 3))
        XCTAssertEqual(io.udp.count, 2, "tried again after it expired")
    }

    func testServfailFromOneServerTriesTheNext() throws {
        let f = try makeForwarder(clusterServers: [cluster, cluster2])
        handle(f, query("b.cluster.local", id: 5))
        respond(f, to: io.udp[0], rcode: RCode.servFail.rawValue)
        XCTAssertEqual(io.udp.count, 2)
        XCTAssertEqual(io.udp[1].server, cluster2)
        respond(f, to: io.udp[1], rcode: RCode.servFail.rawValue)
        XCTAssertEqual(io.replies.count, 1, "every server failed: answer now, no waiting")
        XCTAssertEqual(parse(io.replies[0].1).rcode, RCode.servFail.rawValue)
    }

    func testTruncatedUpstreamAnswerIsRetriedOverTCP() throws {
        let f = try makeForwarder()
        handle(f, query("big.example.test", type: RRType.txt, id: 77, edns: 4096))
        respond(f, to: io.udp[0], flags: Header.tc)
        XCTAssertEqual(io.tcp.count, 1)
        XCTAssertEqual(io.replies.count, 0)
        let up = parse(io.tcp[0].bytes)
        var r = buildMessage(id: up.id, flags: Header.qr | Header.rd | Header.ra) { b in
            b.question(wire("big.example.test"), type: RRType.txt)
            for _ in 0..<4 { b.record(.answer, owner: wire("big.example.test"), type: RRType.txt, ttl: 60, rdata: [200] + Array(repeating: 0x61, count: 200)) }
        }
        r.withUnsafeMutableBytes { f.handleTCPResponse(token: io.tcp[0].token, $0.baseAddress!, count: $0.count, now: now, io: &io) }
        XCTAssertEqual(io.replies.count, 1)
        let a = parse(io.replies[0].1)
        XCTAssertEqual(a.answerCount, 4)
        XCTAssertFalse(a.truncated)
        XCTAssertGreaterThan(io.replies[0].1.count, 512, "an EDNS client gets more than 512 bytes over UDP")
    }

    /// A zone with one server: after a timeout the same query goes again with the same ID
    /// from the same socket, and the slow server's answer to the first copy is accepted.
    func testTimedOutQueryToTheOnlyServerIsRetransmittedAndTheLateAnswerCounts() throws {
        let f = try makeForwarder()
        handle(f, query("slow.example.test", id: 41))
        now += 1000
        f.expire(now: now, io: &io)
        XCTAssertEqual(io.udp.count, 2, "retransmitted after the 1 s upstream timeout")
        XCTAssertEqual(io.udp[1].socket, io.udp[0].socket)
        XCTAssertEqual(io.udp[1].bytes, io.udp[0].bytes, "same ID, same question")
        XCTAssertEqual(f.counters.retransmissions, 1)
        now += 500
        respond(f, to: io.udp[0]) { b, q in b.record(.answer, owner: q, type: RRType.a, ttl: 60, rdata: [192, 0, 2, 7]) }
        XCTAssertEqual(io.replies.count, 1, "the late answer to the first copy is taken")
        XCTAssertEqual(parse(io.replies[0].1).rcode, 0)
        XCTAssertEqual(Array(io.replies[0].1.suffix(4)), [192, 0, 2, 7])
        respond(f, to: io.udp[1]) { b, q in b.record(.answer, owner: q, type: RRType.a, ttl: 60, rdata: [192, 0, 2, 8]) }
        XCTAssertEqual(io.replies.count, 1, "the second copy's answer finds nothing waiting")
        XCTAssertEqual(f.inFlight, 0)
    }

    /// Queries sent in one round (one receive batch) share a socket, so the event loop sends
    /// them with one sendmmsg; each new round draws a random socket again.
    func testUpstreamSocketIsDrawnPerRound() throws {
        let f = try makeForwarder()
        for k in 0..<3 { handle(f, query("round-a\(k).example.test", id: UInt16(k))) }
        XCTAssertEqual(Set(io.udp.map(\.socket)).count, 1, "one round, one socket")
        XCTAssertEqual(Set(io.udp.map { parse($0.bytes).id }).count, 3, "but each query its own ID")
        for k in 0..<24 {
            f.endUpstreamRound()
            handle(f, query("round-b\(k).example.test", id: UInt16(100 + k)))
        }
        XCTAssertGreaterThan(Set(io.udp.suffix(24).map(\.socket)).count, 1, "24 rounds over 4 sockets all on one")
    }

    /// ICMP port unreachable for an attempt: the next server at once, no waiting for the
    /// timeout; an ICMP error naming another server or ID changes nothing; with no server
    /// left the stale answer (or SERVFAIL) comes at once; three in a row mark the server down.
    func testICMPUnreachableFailsTheAttemptAtOnce() throws {
        let f = try makeForwarder(clusterServers: [cluster, cluster2])
        handle(f, query("icmp.cluster.local", id: 1))
        let first = io.udp[0]
        let id = parse(first.bytes).id
        f.upstreamUnreachable(socket: first.socket, id: id &+ 1, server: cluster.address, port: cluster.port, errno: ECONNREFUSED, now: now, io: &io)
        f.upstreamUnreachable(socket: first.socket, id: id, server: cluster2.address, port: cluster2.port, errno: ECONNREFUSED, now: now, io: &io)
        XCTAssertEqual(io.udp.count, 1, "an ICMP error for another ID or server is ignored")
        f.upstreamUnreachable(socket: first.socket, id: id, server: cluster.address, port: cluster.port, errno: ECONNREFUSED, now: now, io: &io)
        XCTAssertEqual(io.udp.count, 2, "the next server, without waiting")
        XCTAssertEqual(io.udp[1].server, cluster2)
        XCTAssertEqual(f.counters.upstreamUnreachable, 1)
        respond(f, to: io.udp[1]) { b, q in b.record(.answer, owner: q, type: RRType.a, ttl: 1, rdata: [172, 21, 0, 5]) }
        XCTAssertEqual(Array(io.replies[0].1.suffix(4)), [172, 21, 0, 5])

        // Expired, both servers refusing: the stale answer at once.
        now += 5_000
        handle(f, query("icmp.cluster.local", id: 2))
        for _ in 0..<2 {
            let sent = io.udp.last!
            f.upstreamUnreachable(socket: sent.socket, id: parse(sent.bytes).id, server: sent.server.address, port: sent.server.port,
                                  errno: ECONNREFUSED, now: now, io: &io)
        }
        XCTAssertEqual(io.replies.count, 2, "stale answer without any timeout")
        XCTAssertEqual(Array(io.replies[1].1.suffix(4)), [172, 21, 0, 5])
        XCTAssertEqual(f.inFlight, 0)
        // A third refusal from the first server in a row marks it down.
        handle(f, query("icmp2.cluster.local", id: 3))
        let sent = io.udp.last!
        XCTAssertEqual(sent.server, cluster)
        f.upstreamUnreachable(socket: sent.socket, id: parse(sent.bytes).id, server: cluster.address, port: cluster.port,
                              errno: ECONNREFUSED, now: now, io: &io)
        XCTAssertTrue(io.events.contains("down \(cluster) cluster"), "\(io.events)")
    }

    /// Failing over to another server is a new query: new ID, and the first server's late
    /// answer no longer matches anything.
    func testFailoverUsesAFreshIDAndIgnoresTheFirstServersLateAnswer() throws {
        let f = try makeForwarder(clusterServers: [cluster, cluster2])
        handle(f, query("c.cluster.local", id: 9))
        now += 1000; f.expire(now: now, io: &io)
        XCTAssertEqual(io.udp[1].server, cluster2)
        XCTAssertEqual(f.counters.retransmissions, 0)
        let mismatched = f.counters.mismatched
        respond(f, to: io.udp[0]) { b, q in b.record(.answer, owner: q, type: RRType.a, ttl: 60, rdata: [172, 21, 0, 1]) }
        XCTAssertEqual(io.replies.count, 0)
        XCTAssertEqual(f.counters.mismatched, mismatched + 1)
        respond(f, to: io.udp[1]) { b, q in b.record(.answer, owner: q, type: RRType.a, ttl: 60, rdata: [172, 21, 0, 2]) }
        XCTAssertEqual(Array(io.replies[0].1.suffix(4)), [172, 21, 0, 2])
    }

    /// A server that sets TC=1 over TCP too (a TC loop) has failed: the next server is
    /// asked over UDP; with none left the client gets SERVFAIL at once. Never a second TCP try.
    func testTCOverTCPFailsTheServerInsteadOfLooping() throws {
        let f = try makeForwarder(clusterServers: [cluster, cluster2])
        handle(f, query("loop.cluster.local", id: 3))
        respond(f, to: io.udp[0], flags: Header.tc)
        XCTAssertEqual(io.tcp.count, 1)
        let up = parse(io.tcp[0].bytes)
        var r = buildMessage(id: up.id, flags: Header.qr | Header.rd | Header.ra | Header.tc) { b in
            b.question(wire("loop.cluster.local"), type: RRType.a)
        }
        r.withUnsafeMutableBytes { f.handleTCPResponse(token: io.tcp[0].token, $0.baseAddress!, count: $0.count, now: now, io: &io) }
        XCTAssertEqual(io.udp.count, 2)
        XCTAssertEqual(io.udp[1].server, cluster2, "TC over TCP: next server")
        respond(f, to: io.udp[1], flags: Header.tc)
        XCTAssertEqual(io.tcp.count, 2)
        r = buildMessage(id: parse(io.tcp[1].bytes).id, flags: Header.qr | Header.rd | Header.ra | Header.tc) { b in
            b.question(wire("loop.cluster.local"), type: RRType.a)
        }
        r.withUnsafeMutableBytes { f.handleTCPResponse(token: io.tcp[1].token, $0.baseAddress!, count: $0.count, now: now, io: &io) }
        XCTAssertEqual(io.replies.count, 1, "both servers failed: SERVFAIL now")
        XCTAssertEqual(parse(io.replies[0].1).rcode, RCode.servFail.rawValue)
        XCTAssertEqual(io.tcp.count, 2)
        XCTAssertEqual(f.inFlight, 0)
    }

    /// A TCP answer cut short (the connection closed mid-message) or unreadable fails that
    /// server; the next one answers.
    func testBrokenTCPAnswerFailsOverToTheNextServer() throws {
        let f = try makeForwarder(clusterServers: [cluster, cluster2])
        handle(f, query("cut.cluster.local", id: 4))
        respond(f, to: io.udp[0], flags: Header.tc)
        f.tcpFailed(token: io.tcp[0].token, now: now, io: &io)
        XCTAssertEqual(io.udp.count, 2)
        XCTAssertEqual(io.udp[1].server, cluster2)
        respond(f, to: io.udp[1], flags: Header.tc)
        // A header that promises an answer the bytes do not hold.
        var r = buildMessage(id: parse(io.tcp[1].bytes).id, flags: Header.qr | Header.rd | Header.ra) { b in
            b.question(wire("cut.cluster.local"), type: RRType.a)
            b.record(.answer, owner: wire("cut.cluster.local"), type: RRType.a, ttl: 60, rdata: [172, 21, 0, 9])
        }
        r.removeLast(6)
        r.withUnsafeMutableBytes { f.handleTCPResponse(token: io.tcp[1].token, $0.baseAddress!, count: $0.count, now: now, io: &io) }
        XCTAssertEqual(io.replies.count, 1)
        XCTAssertEqual(parse(io.replies[0].1).rcode, RCode.servFail.rawValue, "no half answer reaches the client")
        handle(f, query("cut.cluster.local", id: 5))
        XCTAssertEqual(parse(io.replies[1].1).rcode, RCode.servFail.rawValue, "remembered briefly (RFC 9520), not cached as data")
    }

    func testClientGetsTCWhenAnswerExceedsItsUDPSize() throws {
        let f = try makeForwarder()
        handle(f, query("big.example.test", type: RRType.txt, id: 78))
        respond(f, to: io.udp[0]) { b, n in
            for _ in 0..<4 { b.record(.answer, owner: n, type: RRType.txt, ttl: 60, rdata: [200] + Array(repeating: 0x61, count: 200)) }
        }
        let a = parse(io.replies[0].1)
        XCTAssertTrue(a.truncated)
        XCTAssertEqual(a.answerCount, 0)
        XCTAssertLessThanOrEqual(io.replies[0].1.count, 512)
        // The same name over TCP gets everything, from the cache.
        handle(f, query("big.example.test", type: RRType.txt, id: 79), transport: .tcp)
        XCTAssertEqual(parse(io.replies[1].1).answerCount, 4)
        XCTAssertEqual(io.udp.count, 1)
    }

    func testServeStaleWhenClusterDNSIsDown() throws {
        let f = try makeForwarder()
        handle(f, query("web.prod.svc.cluster.local", id: 1))
        respond(f, to: io.udp[0]) { b, n in b.record(.answer, owner: n, type: 1, ttl: 30, rdata: [172, 21, 0, 10]) }
        now += 60_000   // expired
        handle(f, query("web.prod.svc.cluster.local", id: 2))
        XCTAssertEqual(io.udp.count, 2, "expired: ask again")
        now += 1000; f.expire(now: now, io: &io)
        XCTAssertEqual(io.replies.count, 2, "stale answer after the first timeout")
        let stale = parse(io.replies[1].1)
        XCTAssertEqual(stale.rcode, 0)
        XCTAssertEqual(stale.minTTL, 30)
        XCTAssertEqual(Array(io.replies[1].1.suffix(4)), [172, 21, 0, 10])
        XCTAssertEqual(f.counters.staleServed, 1)
        // Within the recheck period the stale answer is served without asking upstream.
        handle(f, query("web.prod.svc.cluster.local", id: 3))
        XCTAssertEqual(io.replies.count, 3)
        // The background resolution is still trying; finish it with a fresh answer.
        let pendingSends = io.udp.count
        XCTAssertGreaterThan(pendingSends, 2)
        respond(f, to: io.udp[pendingSends - 1]) { b, n in b.record(.answer, owner: n, type: 1, ttl: 30, rdata: [172, 21, 0, 11]) }
        handle(f, query("web.prod.svc.cluster.local", id: 4))
        XCTAssertEqual(Array(io.replies.last!.1.suffix(4)), [172, 21, 0, 11], "refreshed in the background")
    }

    /// The background resolution behind a stale answer fails for good (kube-dns still
    /// down): that failure must not replace the stale answer with a cached SERVFAIL, or every
    /// client would get SERVFAIL for cache-servfail-ttl and the name's data would be lost.
    /// Found by the end-to-end test that kills kube-dns under load.
    func testFailedBackgroundRefreshKeepsTheStaleAnswer() throws {
        let f = try makeForwarder()
        handle(f, query("web.prod.svc.cluster.local", id: 1))
        respond(f, to: io.udp[0]) { b, n in b.record(.answer, owner: n, type: 1, ttl: 30, rdata: [172, 21, 0, 10]) }
        for round in 0..<3 {
            now += 60_000   // expired, and the stale answer's stale-ttl (30 s) too
            let before = io.replies.count
            handle(f, query("web.prod.svc.cluster.local", id: UInt16(10 + round)))
            now += 1000; f.expire(now: now, io: &io)
            XCTAssertEqual(io.replies.count, before + 1, "round \(round): stale answer after the first timeout")
            XCTAssertEqual(Array(io.replies.last!.1.suffix(4)), [172, 21, 0, 10], "round \(round)")
            // Let the background resolution run out of time (query timeout 3 s).
            for _ in 0..<3 { now += 1000; f.expire(now: now, io: &io) }
            XCTAssertEqual(f.inFlight, 0, "round \(round)")
            handle(f, query("web.prod.svc.cluster.local", id: UInt16(20 + round)))
            XCTAssertEqual(io.replies.count, before + 2, "round \(round): answered from the cache at once")
            let again = parse(io.replies.last!.1)
            XCTAssertEqual(again.rcode, 0, "round \(round): the failed refresh cached a SERVFAIL over the stale answer")
            XCTAssertEqual(Array(io.replies.last!.1.suffix(4)), [172, 21, 0, 10], "round \(round)")
        }
    }

    func testNoStaleForPublicZonesByDefault() throws {
        let f = try makeForwarder()
        handle(f, query("www.example.test", id: 1))
        respond(f, to: io.udp[0]) { b, n in b.record(.answer, owner: n, type: 1, ttl: 30, rdata: [192, 0, 2, 1]) }
        now += 60_000
        handle(f, query("www.example.test", id: 2))
        for _ in 0..<4 { now += 1000; f.expire(now: now, io: &io) }
        XCTAssertEqual(parse(io.replies.last!.1).rcode, RCode.servFail.rawValue)
    }

    func testNegativeAnswerCachedForSOAMinimum() throws {
        let f = try makeForwarder()
        handle(f, query("nope.example.test", id: 1))
        respond(f, to: io.udp[0], rcode: RCode.nxDomain.rawValue) { b, _ in
            b.record(.authority, owner: wire("example.test"), type: RRType.soa, ttl: 3600,
                     rdata: [0, 0] + [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 120])
        }
        XCTAssertEqual(parse(io.replies[0].1).rcode, RCode.nxDomain.rawValue)
        XCTAssertEqual(f.cache.statistics.entries, 1)
        now += 100_000   // before the prefetch window (last 12 s)
        handle(f, query("nope.example.test", id: 2))
        XCTAssertEqual(io.udp.count, 1)
        XCTAssertEqual(parse(io.replies[1].1).rcode, RCode.nxDomain.rawValue)
        now += 21_000
        handle(f, query("nope.example.test", id: 3))
        XCTAssertEqual(io.udp.count, 2, "expired after the SOA minimum")
    }

    func testNegativeAnswerWithoutSOANotCached() throws {
        let f = try makeForwarder()
        handle(f, query("nosoa.example.test", id: 1))
        respond(f, to: io.udp[0], rcode: RCode.nxDomain.rawValue)
        handle(f, query("nosoa.example.test", id: 2))
        XCTAssertEqual(io.udp.count, 2)
    }

    func testADAndCDClearedForPlainClients() throws {
        let f = try makeForwarder()
        handle(f, query("secure.example.test", id: 1))
        respond(f, to: io.udp[0], flags: Header.ad | Header.cd | Header.aa) { b, n in b.record(.answer, owner: n, type: 1, ttl: 60, rdata: [1, 1, 1, 1]) }
        let flags = parse(io.replies[0].1).flags
        XCTAssertEqual(flags & (Header.ad | Header.cd | Header.z), 0)
        XCTAssertNotEqual(flags & Header.ra, 0)
        // A client that sets AD keeps AD.
        handle(f, query("secure.example.test", id: 2, flags: Header.rd | Header.ad))
        XCTAssertNotEqual(parse(io.replies[1].1).flags & Header.ad, 0)
    }

    func testAccessListRefuses() throws {
        let f = try makeForwarder(allow: ["10.0.0.0/8"])
        handle(f, query("www.example.test", id: 1))
        XCTAssertEqual(parse(io.replies[0].1).rcode, RCode.refused.rawValue)
        XCTAssertEqual(io.udp.count, 0)
        handle(f, query("www.example.test", id: 2), from: IPAddress("10.9.8.7")!)
        XCTAssertEqual(io.udp.count, 1)
    }

    func testBadQueriesAnsweredOrDropped() throws {
        let f = try makeForwarder()
        handle(f, [1, 2, 3])
        XCTAssertEqual(io.replies.count, 0)
        handle(f, query("a.test", id: 3, flags: Header.qr))
        XCTAssertEqual(io.replies.count, 0, "responses are never answered")
        handle(f, query("a.test", id: 4, flags: 0x2800))
        XCTAssertEqual(parse(io.replies[0].1).rcode, RCode.notImp.rawValue)
        var two = query("a.test", id: 5)
        two[5] = 2
        handle(f, two)
        XCTAssertEqual(parse(io.replies[1].1).rcode & 0xf, RCode.formErr.rawValue)
    }

    func testPendingTableFullGivesSERVFAILNotCrash() throws {
        let f = try makeForwarder()
        for i in 0..<70 { handle(f, query("n\(i).example.test", id: UInt16(i))) }
        XCTAssertEqual(io.udp.count, 64)
        XCTAssertEqual(io.replies.count, 6)
        XCTAssertTrue(io.replies.allSatisfy { parse($0.1).rcode == RCode.servFail.rawValue })
        now += 5000; f.expire(now: now, io: &io)
        XCTAssertEqual(f.inFlight, 0)
        XCTAssertTrue(f.health.down[0], "64 timeouts mark the upstream down")
        handle(f, query("again.example.test", id: 99))
        XCTAssertEqual(io.udp.count, 65, "slots are reusable after expiry")
    }

    func testDeadServerIsSkippedUntilAProbeSucceeds() throws {
        let f = try makeForwarder(clusterServers: [cluster, cluster2])
        // Three queries time out on the first replica (then succeed on the second).
        for k in 0..<3 {
            handle(f, query("n\(k).cluster.local", id: UInt16(k)))
            XCTAssertEqual(io.udp.last!.server, cluster)
            now += 1000; f.expire(now: now, io: &io)
            XCTAssertEqual(io.udp.last!.server, cluster2, "k=\(k) sent: \(io.udp.map { $0.server }) replies: \(io.replies.count)")
            respond(f, to: io.udp.last!) { b, n in b.record(.answer, owner: n, type: 1, ttl: 30, rdata: [1, 2, 3, 4]) }
        }
        XCTAssertTrue(f.health.down[1], "replica 1 is down after 3 timeouts")
        XCTAssertTrue(f.health.ready, "the zone still has a replica up")
        // New queries go straight to the second replica: no timeout to wait for.
        handle(f, query("fresh.cluster.local", id: 50))
        XCTAssertEqual(io.udp.last!.server, cluster2)
        respond(f, to: io.udp.last!) { b, n in b.record(.answer, owner: n, type: 1, ttl: 30, rdata: [1, 2, 3, 5]) }
        // A probe for kubernetes.default.svc.cluster.local goes to the dead replica.
        now += 2500; f.expire(now: now, io: &io)
        let probe = io.udp.last!
        XCTAssertEqual(probe.server, cluster)
        XCTAssertEqual(Array(probe.bytes[12..<(12 + 38)]), wire("kubernetes.default.svc.cluster.local"))
        respond(f, to: probe) { b, n in b.record(.answer, owner: n, type: 1, ttl: 5, rdata: [10, 96, 0, 1]) }
        XCTAssertFalse(f.health.down[1], "the answer to the probe brings it back")
        XCTAssertEqual(io.events, ["down 127.0.0.10:53 cluster", "up 127.0.0.10:53 cluster"])
        handle(f, query("after.cluster.local", id: 51))
        XCTAssertEqual(io.udp.last!.server, cluster, "configured order again")
        XCTAssertEqual(io.replies.count, 4, "probes are never delivered to clients")
    }

    func testPublicGroupPrefersTheFastestServer() throws {
        let fast = Endpoint(address: IPAddress("127.0.0.31")!, port: 53)
        let slow = Endpoint(address: IPAddress("127.0.0.30")!, port: 53)
        let router = ZoneRouter(defaultGroup: 0)
        let plan = ForwardingPlan(servers: [slow, fast], groups: [ServerGroup(name: "upstream", kind: .upstream, servers: [0, 1], staleWindow: 0)],
                                  router: router, access: .standard, upstreamTimeoutMs: 1000, queryTimeoutMs: 3000)
        let f = Forwarder(plan: plan, cache: PacketCache(capacityBytes: 1 << 20, shardCount: 2), random: FastRandom(seed: 3),
                          maxPending: 64, maxWaiters: 256, upstreamSockets: 4)
        handle(f, query("a.example.test", id: 1))
        XCTAssertEqual(io.udp.last!.server, slow, "unmeasured servers are tried in order")
        now += 80
        respond(f, to: io.udp.last!) { b, n in b.record(.answer, owner: n, type: 1, ttl: 60, rdata: [1, 1, 1, 1]) }
        handle(f, query("b.example.test", id: 2))
        XCTAssertEqual(io.udp.last!.server, fast, "the unmeasured one next")
        now += 5
        respond(f, to: io.udp.last!) { b, n in b.record(.answer, owner: n, type: 1, ttl: 60, rdata: [1, 1, 1, 2]) }
        for k in 0..<5 {
            handle(f, query("c\(k).example.test", id: UInt16(10 + k)))
            XCTAssertEqual(io.udp.last!.server, fast)
            respond(f, to: io.udp.last!) { b, n in b.record(.answer, owner: n, type: 1, ttl: 60, rdata: [1, 1, 1, 3]) }
        }
        XCTAssertLessThan(f.health.srttMicros[1], f.health.srttMicros[0])
    }

    func testReloadKeepsInFlightQueriesOnTheirPlan() throws {
        let f = try makeForwarder()
        handle(f, query("old.cluster.local", id: 1))
        let sent = io.udp[0]
        XCTAssertEqual(sent.server, cluster)
        // New plan: the cluster zone now goes to cluster2.
        let router = ZoneRouter(defaultGroup: 0)
        try router.add(zone: wire("cluster.local"), group: 1)
        let plan2 = ForwardingPlan(servers: [upstream, cluster2],
                                   groups: [ServerGroup(name: "upstream", kind: .upstream, servers: [0], staleWindow: 0),
                                            ServerGroup(name: "cluster", kind: .cluster, servers: [1], staleWindow: 86_400)],
                                   router: router, access: .standard, upstreamTimeoutMs: 1000, queryTimeoutMs: 3000)
        f.install(plan2)
        handle(f, query("new.cluster.local", id: 2))
        XCTAssertEqual(io.udp[1].server, cluster2)
        // The old query's answer is still accepted from the old server.
        respond(f, to: sent) { b, n in b.record(.answer, owner: n, type: 1, ttl: 30, rdata: [9, 9, 9, 9]) }
        XCTAssertEqual(io.replies.count, 1)
        XCTAssertEqual(Array(io.replies[0].1.suffix(4)), [9, 9, 9, 9])
        XCTAssertEqual(f.states.compactMap { $0 }.count, 1, "the old plan is released with its last query")
        // The cache survived the reload.
        handle(f, query("old.cluster.local", id: 3))
        XCTAssertEqual(io.udp.count, 2)
    }

    func testClusterAAAAFailureBecomesNodataWhenTheNameHasAnA() throws {
        let f = try makeForwarder()
        handle(f, query("web.prod.svc.cluster.local", id: 1))
        respond(f, to: io.udp[0]) { b, n in b.record(.answer, owner: n, type: 1, ttl: 30, rdata: [172, 21, 0, 10]) }
        handle(f, query("web.prod.svc.cluster.local", type: RRType.aaaa, id: 2))
        respond(f, to: io.udp[1], rcode: RCode.servFail.rawValue)
        let a = parse(io.replies[1].1)
        XCTAssertEqual(a.rcode, 0, "NODATA, not SERVFAIL: nginx would fail the whole lookup")
        XCTAssertEqual(a.answerCount, 0)
        XCTAssertEqual(f.counters.synthesizedNodata, 1)
        // A name without a known A record still gets SERVFAIL, and so do public names.
        handle(f, query("unknown.prod.svc.cluster.local", type: RRType.aaaa, id: 3))
        respond(f, to: io.udp[2], rcode: RCode.servFail.rawValue)
        XCTAssertEqual(parse(io.replies[2].1).rcode, RCode.servFail.rawValue)
    }

    func testRateLimitSlipsAndDropsOnlyOverLimitUDPClients() throws {
        let cluster = self.cluster
        let router = ZoneRouter(defaultGroup: 0)
        try router.add(zone: wire("cluster.local"), group: 0)
        let plan = ForwardingPlan(servers: [cluster], groups: [ServerGroup(name: "cluster", kind: .cluster, servers: [0], staleWindow: 0)],
                                  router: router, access: .standard,
                                  rateLimit: RateLimitPolicy(queriesPerSecond: 10, slip: 2, exempt: [try CIDR(parsing: "192.168.1.200/32")]))
        let f = Forwarder(plan: plan, cache: PacketCache(capacityBytes: 1 << 20, shardCount: 2), random: FastRandom(seed: 5),
                          maxPending: 64, maxWaiters: 256, upstreamSockets: 2)
        handle(f, query("hot.cluster.local", id: 1))
        respond(f, to: io.udp[0]) { b, n in b.record(.answer, owner: n, type: 1, ttl: 300, rdata: [1, 2, 3, 4]) }
        for k in 0..<29 { handle(f, query("hot.cluster.local", id: UInt16(10 + k))) }
        // 10 tokens: the first query and 9 more pass; of the 20 over the limit every 2nd slips (TC).
        let truncated = io.replies.filter { parse($0.1).truncated }.count
        XCTAssertEqual(io.replies.count, 10 + 10)
        XCTAssertEqual(truncated, 10)
        XCTAssertEqual(f.counters.rateLimited, 20)
        // Tokens come back with time; exempt clients and TCP are never limited.
        now += 1000
        handle(f, query("hot.cluster.local", id: 90))
        XCTAssertFalse(parse(io.replies.last!.1).truncated)
        for k in 0..<30 { handle(f, query("hot.cluster.local", id: UInt16(100 + k)), from: IPAddress("192.168.1.200")!) }
        for k in 0..<30 { handle(f, query("hot.cluster.local", id: UInt16(200 + k)), transport: .tcp) }
        XCTAssertEqual(io.replies.suffix(60).filter { parse($0.1).truncated }.count, 0)
    }

    func testANYOverUDPIsTruncated() throws {
        let f = try makeForwarder()
        handle(f, query("example.test", type: 255, id: 7))
        XCTAssertTrue(parse(io.replies[0].1).truncated)
        XCTAssertEqual(io.udp.count, 0, "not forwarded over UDP")
        handle(f, query("example.test", type: 255, id: 8), transport: .tcp)
        XCTAssertEqual(io.udp.count, 1, "over TCP it is forwarded")
    }

    func testPrefetchRefreshesHotEntryOnce() throws {
        let f = try makeForwarder()
        handle(f, query("hot.example.test", id: 1))
        respond(f, to: io.udp[0]) { b, n in b.record(.answer, owner: n, type: 1, ttl: 100, rdata: [1, 1, 1, 1]) }
        now += 95_000
        handle(f, query("hot.example.test", id: 2))
        handle(f, query("hot.example.test", id: 3))
        XCTAssertEqual(io.replies.count, 3, "both answered from cache")
        XCTAssertEqual(io.udp.count, 2, "one background refresh")
        XCTAssertEqual(f.counters.prefetches, 1)
    }
}
