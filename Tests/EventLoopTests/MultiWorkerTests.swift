import Foundation
import XCTest
import Glibc
import NetAddress
import DNSWire
import Forwarding
@testable import EventLoop

/// Two workers in this process sharing one cache, an in-process UDP upstream on its own
/// thread, and four client threads asking overlapping names at once: the multi-worker path
/// (SO_REUSEPORT spreading, shared sharded cache, per-worker forwarders) under real
/// concurrency, plus a plan reload and metric snapshots from another thread while it runs.
/// Meant for ThreadSanitizer (`swift test --sanitize=thread`, see Fuzz/README.md).
final class MultiWorkerTests: XCTestCase {
    func udpSocket(timeoutMs: Int) -> (Int32, UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        _ = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        var tv = timeval(tv_sec: timeoutMs / 1000, tv_usec: Int((timeoutMs % 1000) * 1000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return (fd, UInt16(bigEndian: sin.sin_port))
    }

    func send(_ fd: Int32, _ bytes: [UInt8], to addr: sockaddr_in) {
        var a = addr
        _ = bytes.withUnsafeBytes { b in
            withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, b.baseAddress!, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
    }

    func receive(_ fd: Int32) -> ([UInt8], sockaddr_in)? {
        var buf = [UInt8](repeating: 0, count: 4096)
        var from = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let n = buf.withUnsafeMutableBytes { b in
            withUnsafeMutablePointer(to: &from) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, b.baseAddress!, b.count, 0, $0, &len) } }
        }
        guard n > 0 else { return nil }
        return (Array(buf[..<n]), from)
    }

    static func loopback(_ port: UInt16) -> sockaddr_in {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        sin.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        return sin
    }

    static func build(_ body: (inout MessageBuilder) -> Void, id: UInt16, flags: UInt16) -> [UInt8] {
        var storage = [UInt8](repeating: 0, count: 1024)
        return storage.withUnsafeMutableBytes { raw -> [UInt8] in
            var b = MessageBuilder(buffer: raw.baseAddress!, capacity: raw.count, id: id, flags: flags)
            body(&b)
            return b.bytes
        }
    }

    final class Flag: @unchecked Sendable {
        let lock = NSLock()
        var stop = false
        var upstreamQueries = 0
        var answered = 0
        var failures: [String] = []
        func with<T>(_ body: (Flag) -> T) -> T { lock.lock(); defer { lock.unlock() }; return body(self) }
    }

    func testTwoWorkersFourClients() throws {
        let (upstream, upstreamPort) = udpSocket(timeoutMs: 50)
        defer { close(upstream) }
        let (probe, listenPort) = udpSocket(timeoutMs: 10)
        close(probe)
        var options = ServerOptions()
        options.listen = [Endpoint(address: IPAddress("127.0.0.1")!, port: listenPort)]
        options.threads = 2
        options.upstreamSockets = 4
        let up = Endpoint(address: IPAddress("127.0.0.1")!, port: upstreamPort)
        func plan() -> ForwardingPlan {
            ForwardingPlan(servers: [up], groups: [ServerGroup(name: "upstream", kind: .upstream, servers: [0], staleWindow: 60)],
                           router: ZoneRouter(defaultGroup: 0), access: .standard, upstreamTimeoutMs: 500, queryTimeoutMs: 2_000)
        }
        let server = try DNSServer(options: options, plan: plan(), cacheBytes: 1 << 20)
        try server.start()
        let state = Flag()

        // The upstream: answers every query with one A record, TTL 1 so entries expire,
        // get served stale and refreshed while the clients keep asking.
        let upstreamDone = DispatchSemaphore(value: 0)
        Thread {
            while !state.with({ $0.stop }) {
                guard let (q, from) = self.receive(upstream) else { continue }
                let info = q.withUnsafeBytes { QueryParser.parse($0.baseAddress!, count: $0.count) }
                guard info.verdict == .query else { continue }
                let name = Array(q[12..<(12 + info.nameLength)])
                let a = MultiWorkerTests.build({ b in
                    b.question(name, type: info.qtype)
                    b.record(.answer, owner: name, type: 1, ttl: 1, rdata: [192, 0, 2, UInt8(name.count)])
                }, id: info.id, flags: Header.qr | Header.rd | Header.ra)
                self.send(upstream, a, to: from)
                state.with { $0.upstreamQueries += 1 }
            }
            upstreamDone.signal()
        }.start()

        let clientsDone = DispatchSemaphore(value: 0)
        let deadline = Date().addingTimeInterval(2.0)
        for t in 0..<4 {
            Thread {
                let (fd, _) = self.udpSocket(timeoutMs: 2_000)
                defer { close(fd) }
                var i = 0
                var answered = 0
                var failures: [String] = []
                while Date() < deadline && i < 5_000 {
                    let id = UInt16(truncatingIfNeeded: t << 12 | i)
                    let name = try! DNSName.wire(fromText: "host\((i * 7 + t) % 24).Multi.test")
                    let q = MultiWorkerTests.build({ $0.question(name, type: 1) }, id: id, flags: Header.rd)
                    self.send(fd, q, to: MultiWorkerTests.loopback(listenPort))
                    guard let (a, _) = self.receive(fd) else { failures.append("no answer to \(i)"); break }
                    if a.count < 12 + name.count + 4 || a[0] != UInt8(id >> 8) || a[1] != UInt8(id & 0xff)
                        || Array(a[12..<(12 + name.count)]) != name || a[2] & 0x80 == 0 {
                        failures.append("bad answer to \(i): \(a)")
                    } else {
                        answered += 1
                    }
                    i += 1
                }
                state.with { $0.answered += answered; $0.failures += failures }
                clientsDone.signal()
            }.start()
        }
        // Meanwhile: a reload and metrics snapshots, from this thread.
        Thread.sleep(forTimeInterval: 0.3)
        server.install(plan())
        for _ in 0..<5 {
            let snaps = server.snapshots(timeoutMs: 1_000)
            XCTAssertEqual(snaps.count, 2)
            XCTAssertTrue(snaps.allSatisfy { $0 != nil }, "a worker's loop did not answer")
            Thread.sleep(forTimeInterval: 0.1)
        }
        for _ in 0..<4 { clientsDone.wait() }
        state.with { $0.stop = true }
        upstreamDone.wait()
        server.stop()

        let (answered, upstreamQueries, failures) = state.with { ($0.answered, $0.upstreamQueries, $0.failures) }
        XCTAssertEqual(failures.prefix(5), [], "\(failures.count) failures")
        XCTAssertGreaterThan(answered, 100)
        XCTAssertGreaterThan(upstreamQueries, 0)
        let c = server.counters
        XCTAssertGreaterThan(c.cacheHits, 0, "answers came from the shared cache too")
    }
}
