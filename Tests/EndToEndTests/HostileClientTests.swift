import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Issue 7: clients that try to use up the server. A stalled TCP client, thousands of idle
/// connections, a client that never reads its answers, and a flood of unique names: each
/// costs a bounded amount, everyone else keeps being served, and the memory stays bounded.
final class HostileClientTests: EndToEndTestCase {
    private var ownKnots: [KnotServer] = []

    override func tearDown() {
        ownKnots.forEach { $0.stop() }
        ownKnots = []
        super.tearDown()
    }

    private static var msUnit: String { ProcessInfo.processInfo.environment["KUBEBRIDGE_E2E_MS_SUFFIX"] ?? "" }

    /// A UDP and a fresh TCP client are both answered, each within `within` seconds.
    private func assertServed(_ kb: KubebridgeProcess, _ name: String, expect: String, within: TimeInterval = 1,
                              _ context: @autoclosure () -> String, file: StaticString = #filePath, line: UInt = #line) throws {
        let id = UInt16.random(in: 1...0xFFFF)
        var start = Date()
        let udp = try rawUDP(kb, QueryBuilder(id: id, name: name).bytes, timeout: 3)
        let udpElapsed = Date().timeIntervalSince(start)
        XCTAssertEqual(udp?.addresses, [expect], "UDP \(name) \(context()): \(udp.map { "\($0)" } ?? "no answer")", file: file, line: line)
        XCTAssertLessThan(udpElapsed, within, "UDP \(name) took \(udpElapsed) s \(context())", file: file, line: line)
        start = Date()
        let tcp = try RawDNS.TCPConnection(host: kb.host, port: kb.port)
        try tcp.send([QueryBuilder(id: id, name: name).bytes])
        let tcpAnswer = try tcp.receive(timeout: 3).map { try DNSResponse($0) }
        let tcpElapsed = Date().timeIntervalSince(start)
        XCTAssertEqual(tcpAnswer?.addresses, [expect], "fresh TCP client, \(name) \(context()): \(tcpAnswer.map { "\($0)" } ?? "no answer")",
                       file: file, line: line)
        XCTAssertLessThan(tcpElapsed, within, "fresh TCP client took \(tcpElapsed) s \(context())", file: file, line: line)
    }

    // MARK: - C1

    /// One client sends a length prefix and stops, another half a message: each holds one
    /// connection, others are served meanwhile, and both are closed after --tcp-idle-timeout.
    func testStalledTCPClientIsClosedAfterIdleTimeoutAndOthersAreServed() throws {
        let fake = try startFake(.ok)
        let kb = try startKubebridge(upstreams: [fake], ["--tcp-idle-timeout", "1500\(Self.msUnit)"])
        assertAnswer(try dig(kb, "warm.example.test"), "A", ["192.0.2.1"])
        let lengthOnly = try RawDNS.TCPConnection(host: kb.host, port: kb.port)
        try lengthOnly.sendRaw([0x00, 0x40])
        let halfMessage = try RawDNS.TCPConnection(host: kb.host, port: kb.port)
        let framed = RawDNS.TCPConnection.frame(QueryBuilder(id: 0x5301, name: "half.example.test.").bytes)
        try halfMessage.sendRaw(Array(framed[0..<(framed.count / 2)]))
        let stalledAt = Date()

        try assertServed(kb, "warm.example.test.", expect: "192.0.2.1", within: 0.75, "while two TCP clients stall")
        // A pipelined client on its own connection is not blocked by the stalled ones either.
        let busy = try RawDNS.TCPConnection(host: kb.host, port: kb.port)
        try busy.send((0..<5).map { QueryBuilder(id: UInt16(0x5310 + $0), name: "busy-\($0).example.test.").bytes })
        var busyAnswers = 0
        while busyAnswers < 5, (try busy.receive(timeout: 2)) != nil { busyAnswers += 1 }
        XCTAssertEqual(busyAnswers, 5, "pipelined queries on another connection while two clients stall")

        for (label, connection) in [("length prefix only", lengthOnly), ("half a message", halfMessage)] {
            XCTAssertTrue(connection.isClosedByPeer(timeout: max(0.1, 4 - Date().timeIntervalSince(stalledAt))),
                          "\(label): still open 4 s after stalling, with --tcp-idle-timeout 1500")
            let closedAfter = Date().timeIntervalSince(stalledAt)
            XCTAssertGreaterThan(closedAfter, 1.2, "\(label): closed after \(closedAfter) s, before the 1.5 s idle timeout")
        }
        XCTAssertLessThan(Date().timeIntervalSince(stalledAt), 3.2, "stalled connections closed late")
        XCTAssertEqual(try fake.state().queries.filter { $0.qname == "half.example.test." }.count, 0)
        try assertServed(kb, "warm.example.test.", expect: "192.0.2.1", "after the stalled clients were closed")
    }

    // MARK: - C2

    /// 2,000 idle connections against --max-tcp-connections 500 --threads 1: the oldest are
    /// closed to make room, kubebridge holds at most ~500 sockets, UDP and new TCP clients
    /// are served throughout.
    func testThousandsOfIdleTCPConnectionsAreCappedAndDoNotStarveService() throws {
        let limit = E2E.raiseFileLimit(to: 4_200)
        guard limit >= 2_100 else { throw XCTSkip("RLIMIT_NOFILE is \(limit); 2,000 client sockets need more") }
        let fake = try startFake(.ok)
        let kb = try startKubebridge(upstreams: [fake], ["--max-tcp-connections", "500", "--threads", "1",
                                                         "--tcp-idle-timeout", "30000\(Self.msUnit)"])
        assertAnswer(try dig(kb, "hot.example.test"), "A", ["192.0.2.1"])
        let fdsBefore = E2E.openFileCount(pid: kb.pid) ?? 0

        var fds: [Int32] = []
        defer { fds.forEach { close($0) } }
        let address = try SocketAddress(host: kb.host, port: kb.port)
        let start = Date()
        var connectErrors: [Int32: Int] = [:]
        for i in 0..<2_000 {
            let fd = socket(AF_INET, E2E.tcpSocketType, 0)
            guard fd >= 0 else { XCTFail("socket() failed after \(i) connections: errno \(errno)"); break }
            var tv = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            if address.withSockaddr({ connect(fd, $0, $1) }) != 0 {
                connectErrors[errno, default: 0] += 1
                close(fd)
                continue
            }
            fds.append(fd)
            if i == 1_000 {
                try assertServed(kb, "hot.example.test.", expect: "192.0.2.1", "with 1,000 idle TCP connections opened")
            }
        }
        let openedIn = Date().timeIntervalSince(start)
        XCTAssertEqual(connectErrors, [:], "connect() failures (errno: count) while opening 2,000 connections")
        XCTAssertLessThan(openedIn, 15, "opening 2,000 connections took \(openedIn) s: the server is not accepting")
        try assertServed(kb, "hot.example.test.", expect: "192.0.2.1", "with 2,000 idle TCP connections opened")

        // What the server holds: its sockets are capped near 500 connections.
        Thread.sleep(forTimeInterval: 0.3)
        let fdsDuring = E2E.openFileCount(pid: kb.pid) ?? 0
        XCTAssertLessThanOrEqual(fdsDuring - fdsBefore, 510,
                                 "kubebridge holds \(fdsDuring) descriptors (\(fdsBefore) before) with --max-tcp-connections 500")
        // The client side sees which ones were closed: the oldest, not the newest.
        let pollRDHUP: Int16 = 0x2000   // POLLRDHUP (needs _GNU_SOURCE in C, absent from Glibc here)
        let readable = Int16(POLLIN), hangUp = Int16(POLLHUP), failed = Int16(POLLERR)
        var pfds = fds.map { pollfd(fd: $0, events: readable | pollRDHUP, revents: 0) }
        _ = poll(&pfds, nfds_t(pfds.count), 0)
        let gone: Int16 = pollRDHUP | hangUp | readable | failed
        let closed: [Bool] = pfds.map { ($0.revents & gone) != 0 }
        let closedCount = closed.filter { $0 }.count
        XCTAssertGreaterThanOrEqual(closedCount, fds.count - 505,
                                    "only \(closedCount) of \(fds.count) idle connections were closed with a cap of 500")
        if closed.count == 2_000 {
            XCTAssertTrue(closed[0], "the oldest idle connection was not the one evicted")
            XCTAssertFalse(closed[1_999], "the newest connection was evicted")
        }
        print("idle connections: \(fds.count) opened in \(String(format: "%.2f", openedIn)) s, \(closedCount) closed by the server, "
              + "server descriptors \(fdsBefore) -> \(fdsDuring)")
        // The newest surviving connection still works.
        if let lastFD = fds.last, closed.last == false {
            let query = RawDNS.TCPConnection.frame(QueryBuilder(id: 0x5401, name: "hot.example.test.").bytes)
            XCTAssertEqual(query.withUnsafeBytes { send(lastFD, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }, query.count)
            var pfd = pollfd(fd: lastFD, events: Int16(POLLIN), revents: 0)
            XCTAssertEqual(poll(&pfd, 1, 2000), 1, "no answer on the newest of the 2,000 connections")
        }
        XCTAssertTrue(kb.isRunning)
        XCTAssertEqual(try fake.state().total, 1, "only one name was ever asked")
    }

    // MARK: - C3

    /// kubebridge with a kube-dns stand-in that has a ~43 KB TXT answer (cached), and a raw TCP
    /// client with a 4 KiB receive buffer that has pipelined 1,000 queries for it (43 MB of
    /// answers) without reading any.
    private func startHugeAnswerClient(_ extra: [String]) throws -> (kb: KubebridgeProcess, fd: Int32, sent: Int, rssBefore: Int) {
        let hugeCount = 200
        let knot = try KnotServer(name: "kube-dns-huge", address: "127.0.0.2", zones: [
            "cluster.local": Zones.soa("cluster.local") + "web.prod.svc A 172.21.0.10\n"
                + Zones.txtRecords("huge.prod.svc", count: hugeCount),
        ])
        ownKnots.append(knot)
        let kb = try startKubebridge(["--cluster-zone", "cluster.local", "--cluster-dns", knot.endpoint, "--upstream", "127.0.0.9:9"]
                                     + extra + Self.timeouts(upstreamMs: 1000, queryMs: 3000))
        let warm = try dig(kb, "huge.prod.svc.cluster.local", "TXT", options: ["+tcp"])
        XCTAssertEqual(warm.rdata("TXT").count, hugeCount, "the huge TXT answer over TCP: \(warm.status ?? "-") \(warm.answers.count) records")
        assertAnswer(try dig(kb, "web.prod.svc.cluster.local"), "A", ["172.21.0.10"])
        let rssBefore = try XCTUnwrap(E2E.rssKiB(pid: kb.pid))

        let address = try SocketAddress(host: kb.host, port: kb.port)
        let fd = socket(AF_INET, E2E.tcpSocketType, 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        var small: Int32 = 4096
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        var tv = timeval(tv_sec: 3, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        XCTAssertEqual(address.withSockaddr { connect(fd, $0, $1) }, 0, "connect: errno \(errno)")
        var batch: [UInt8] = []
        for i in 0..<1_000 {
            batch += RawDNS.TCPConnection.frame(QueryBuilder(id: UInt16(i), name: "huge.prod.svc.cluster.local.", type: DNSType.txt).bytes)
        }
        var sent = 0
        while sent < batch.count {
            let n = batch[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }   // cut off (EPIPE/ECONNRESET) or the server stopped reading (timeout)
            sent += n
        }
        return (kb, fd, sent, rssBefore)
    }

    /// Reads until EOF/RST, or until nothing arrives for 1.5 s, or `seconds` pass; counts the
    /// complete DNS messages of the stream.
    private func drain(_ fd: Int32, seconds: TimeInterval) -> (answers: Int, bytes: Int, closed: Bool) {
        var answers = 0, bytes = 0, closed = false
        var lengthBuffer: [UInt8] = []
        var readBuffer = [UInt8](repeating: 0, count: 65536)
        var remainingInMessage = 0
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 1500) <= 0 { break }   // quiet for 1.5 s: open, sending nothing
            let n = readBuffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { closed = true; break }
            bytes += n
            var i = 0
            while i < n {
                if remainingInMessage > 0 {
                    let take = min(remainingInMessage, n - i)
                    remainingInMessage -= take; i += take
                    if remainingInMessage == 0 { answers += 1 }
                } else {
                    lengthBuffer.append(readBuffer[i]); i += 1
                    if lengthBuffer.count == 2 {
                        remainingInMessage = Int(lengthBuffer[0]) << 8 | Int(lengthBuffer[1])
                        lengthBuffer = []
                    }
                }
            }
        }
        return (answers, bytes, closed)
    }

    /// The client never reads: its further queries are left unread (backpressure), memory
    /// stays bounded, other clients are served, and after --tcp-idle-timeout (2 s) without it
    /// taking a byte, the connection is closed.
    func testClientThatNeverReadsIsClosedAndOthersAreServed() throws {
        let (kb, fd, sent, rssBefore) = try startHugeAnswerClient(["--tcp-idle-timeout", "2s"])
        defer { close(fd) }
        let slowStart = Date()
        var peakRSS = rssBefore
        for i in 0..<6 {
            Thread.sleep(forTimeInterval: 0.25)
            peakRSS = max(peakRSS, E2E.rssKiB(pid: kb.pid) ?? 0)
            if i % 2 == 0 {
                try assertServed(kb, "web.prod.svc.cluster.local.", expect: "172.21.0.10", "while a TCP client does not read")
            }
        }
        let other = try dig(kb, "huge.prod.svc.cluster.local", "TXT", options: ["+tcp"])
        XCTAssertEqual(other.rdata("TXT").count, 200, "another client's huge TXT over TCP while one does not read: \(other.status ?? "-")")
        peakRSS = max(peakRSS, E2E.rssKiB(pid: kb.pid) ?? 0)
        XCTAssertLessThan(peakRSS - rssBefore, 16 * 1024,
                          "RSS grew from \(rssBefore) KiB to \(peakRSS) KiB while a client did not read \(sent) bytes of queries' answers")
        // Still not reading, past the idle timeout; then read what was sent before the close.
        Thread.sleep(until: slowStart.addingTimeInterval(3))
        let (answers, bytes, closed) = drain(fd, seconds: 6)
        print("non-reader: sent \(sent) bytes of queries, read back \(answers) answers / \(bytes) bytes, closed \(closed), "
              + "RSS \(rssBefore) -> peak \(peakRSS) KiB")
        XCTAssertTrue(closed, "the client that never read was not disconnected (\(Date().timeIntervalSince(slowStart)) s, "
                      + "read back \(answers) answers / \(bytes) bytes)")
        XCTAssertLessThan(answers, 1_000, "every answer was kept for a client that did not read (\(bytes) bytes)")
        try assertServed(kb, "web.prod.svc.cluster.local.", expect: "172.21.0.10", "after the non-reader")
        XCTAssertTrue(kb.isRunning)
    }

    /// The same client, reading after a pause and slowly (4 KiB receive buffer): it gets all
    /// 1,000 answers (43 MB), while kubebridge never holds more than ~64 KiB of them.
    func testSlowReaderGetsEveryAnswerWithBoundedMemory() throws {
        let (kb, fd, sent, rssBefore) = try startHugeAnswerClient([])
        defer { close(fd) }
        XCTAssertEqual(sent, 1_000 * (sent / 1_000), "\(sent)")
        Thread.sleep(forTimeInterval: 1)
        let paused = E2E.rssKiB(pid: kb.pid) ?? 0
        let (answers, bytes, closed) = drain(fd, seconds: 30)
        let after = E2E.rssKiB(pid: kb.pid) ?? 0
        print("slow reader: \(answers) answers / \(bytes) bytes, closed \(closed), RSS \(rssBefore) -> \(paused) -> \(after) KiB")
        XCTAssertEqual(answers, 1_000, "a client that reads slowly must get every answer (\(bytes) bytes, closed \(closed))")
        XCTAssertFalse(closed, "the slow reader was disconnected")
        XCTAssertLessThan(max(paused, after) - rssBefore, 16 * 1024, "RSS \(rssBefore) -> \(paused) -> \(after) KiB")
        try assertServed(kb, "web.prod.svc.cluster.local.", expect: "172.21.0.10", "after the slow reader")
    }

    // MARK: - C4

    /// 20,000 unique names through a 1 MiB cache, with one hot name asked after every 100:
    /// RSS grows by less than 40 MiB and the hot name never leaves the cache.
    func testFloodOfUniqueNamesKeepsMemoryBoundedAndTheHotNameCached() throws {
        let fake = try startFake(.ok, extra: ["--counts-only"])
        let kb = try startKubebridge(upstreams: [fake], ["--cache-size", "1MiB"])
        let hot = "hot.example.test."
        let sock = try RawDNS.UDPSocket(host: kb.host, port: kb.port)
        func ask(_ name: String, id: UInt16) throws -> DNSResponse? {
            try sock.send(QueryBuilder(id: id, name: name).bytes)
            let deadline = Date().addingTimeInterval(2)
            while let bytes = try sock.receive(timeout: deadline.timeIntervalSinceNow) {
                let r = try DNSResponse(bytes)
                if r.id == id { return r }   // a late answer to an earlier flood query: skip it
            }
            return nil
        }
        XCTAssertEqual(try ask(hot, id: 1)?.addresses, ["192.0.2.1"])
        let rssBefore = try XCTUnwrap(E2E.rssKiB(pid: kb.pid))
        var peakRSS = rssBefore
        var answered = 0, hotMisses: [String] = []
        let start = Date()
        let batches = 200, perBatch = 100
        for batch in 0..<batches {
            for i in 0..<perBatch {
                try sock.send(QueryBuilder(id: UInt16(0x1000 + i), name: "flood-\(batch)-\(i).example.test.").bytes)
            }
            var got = 0
            let deadline = Date().addingTimeInterval(2)
            while got < perBatch, let bytes = try sock.receive(timeout: deadline.timeIntervalSinceNow) {
                if let r = try? DNSResponse(bytes), r.id >= 0x1000, r.id < 0x1000 + UInt16(perBatch), r.rcode == DNSRcode.noError {
                    got += 1
                }
            }
            answered += got
            let hotAnswer = try ask(hot, id: UInt16(0x8000 + batch))
            if hotAnswer?.addresses != ["192.0.2.1"] {
                hotMisses.append("batch \(batch): \(hotAnswer.map { "\($0)" } ?? "no answer")")
            }
            if batch % 20 == 19 { peakRSS = max(peakRSS, E2E.rssKiB(pid: kb.pid) ?? 0) }
        }
        let elapsed = Date().timeIntervalSince(start)
        peakRSS = max(peakRSS, E2E.rssKiB(pid: kb.pid) ?? 0)
        let state = try fake.state(settle: 0.3)
        XCTAssertGreaterThanOrEqual(answered, batches * perBatch * 99 / 100,
                                    "answered \(answered) of \(batches * perBatch) flood queries in \(elapsed) s")
        XCTAssertEqual(hotMisses, [], "the hot name was not answered from the cache every time")
        XCTAssertEqual(state.count(hot), 1, "the hot name went upstream \(state.count(hot)) times during a scan of unique names")
        XCTAssertLessThan(peakRSS - rssBefore, 40 * 1024, "RSS grew from \(rssBefore) KiB to \(peakRSS) KiB with --cache-size 1MiB")
        XCTAssertLessThan(elapsed, 60, "the flood took \(elapsed) s")
        print("flood: \(answered) answers in \(String(format: "%.1f", elapsed)) s, RSS \(rssBefore) -> peak \(peakRSS) KiB, "
              + "upstream \(state.total) queries")
        XCTAssertTrue(kb.isRunning)
    }
}
