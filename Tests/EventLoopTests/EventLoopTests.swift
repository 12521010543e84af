import XCTest
import Glibc
import NetAddress
import DNSWire
import Forwarding
@testable import EventLoop

final class SyscallTests: XCTestCase {
    func testEAGAINIsAValueNotAnError() throws {
        let fd = try Sys.socket(AF_INET, Int32(SOCK_DGRAM.rawValue))
        defer { Sys.close(fd) }
        try Sys.bind(fd, SocketAddress(Endpoint(address: IPAddress("127.0.0.1")!, port: 0)))
        let batch = UDPBatch(capacity: 4, bufferSize: 512)
        batch.prepareReceive(4, withControl: false)
        XCTAssertEqual(try Sys.recvmmsg(fd, batch.msgs, 4), .wouldBlock)
        var buf = [UInt8](repeating: 0, count: 16)
        XCTAssertEqual(try buf.withUnsafeMutableBytes { try Sys.read(fd, $0.baseAddress!, 16) }, .wouldBlock)
    }

    func testRealErrorsThrowWithContext() throws {
        let a = try Sys.socket(AF_INET, Int32(SOCK_DGRAM.rawValue))
        let b = try Sys.socket(AF_INET, Int32(SOCK_DGRAM.rawValue))
        defer { Sys.close(a); Sys.close(b) }
        try Sys.setOption(a, SOL_SOCKET, SO_REUSEADDR, 0, "SO_REUSEADDR")
        let addr = SocketAddress(Endpoint(address: IPAddress("127.0.0.1")!, port: 0))
        try Sys.bind(a, addr)
        var bound = SocketAddress()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &bound.storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(a, $0, &len) } }
        bound.length = len
        XCTAssertThrowsError(try Sys.bind(b, bound)) { e in
            XCTAssertTrue("\(e)".contains("bind: Address already in use"), "\(e)")
            XCTAssertTrue("\(e)".hasPrefix("127.0.0.1:"), "\(e)")
        }
    }

    func testSocketAddressRoundTrip() throws {
        for s in ["127.0.0.1:5353", "[::1]:53", "[fd00::10]:5300", "192.168.1.97:53"] {
            let e = try Endpoint(parsing: s)
            XCTAssertEqual(SocketAddress(e).endpoint, e, s)
        }
    }

    func testLocalInterfacesIncludeLoopback() {
        XCTAssertTrue(LocalInterfaces.addresses().contains(IPAddress("127.0.0.1")!))
    }
}

/// One worker in this process, a plain UDP socket as the upstream: the loop's receive,
/// forward, answer and batch-send path without any other program involved.
final class WorkerRoundTripTests: XCTestCase {
    func udpSocket(bindTo port: UInt16 = 0) throws -> (Int32, UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        sin.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        _ = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        var tv = timeval(tv_sec: 3, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return (fd, UInt16(bigEndian: sin.sin_port))
    }

    func freePort() throws -> UInt16 {
        let (fd, port) = try udpSocket()
        close(fd)
        return port
    }

    func send(_ fd: Int32, _ bytes: [UInt8], to port: UInt16) {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        sin.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        _ = bytes.withUnsafeBytes { b in
            withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, b.baseAddress!, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
    }

    func receive(_ fd: Int32) -> ([UInt8], UInt16)? {
        var buf = [UInt8](repeating: 0, count: 4096)
        var from = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let n = buf.withUnsafeMutableBytes { b in
            withUnsafeMutablePointer(to: &from) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, b.baseAddress!, b.count, 0, $0, &len) } }
        }
        guard n > 0 else { return nil }
        return (Array(buf[..<n]), UInt16(bigEndian: from.sin_port))
    }

    func testQueryForwardedAnsweredAndCached() throws {
        let (upstream, upstreamPort) = try udpSocket()
        defer { close(upstream) }
        let listenPort = try freePort()
        var settings = ServerOptions()
        settings.listen = [Endpoint(address: IPAddress("127.0.0.1")!, port: listenPort)]
        settings.threads = 1
        let up = Endpoint(address: IPAddress("127.0.0.1")!, port: upstreamPort)
        let plan = ForwardingPlan(servers: [up], groups: [ServerGroup(name: "upstream", kind: .upstream, servers: [0], staleWindow: 0)],
                                  router: ZoneRouter(defaultGroup: 0), access: .standard)
        let server = try DNSServer(options: settings, plan: plan, cacheBytes: 1 << 20)
        try server.start()
        defer { server.stop() }

        let (client, _) = try udpSocket()
        defer { close(client) }
        var q = [UInt8](repeating: 0, count: 512)
        let qlen = q.withUnsafeMutableBytes { raw -> Int in
            var b = MessageBuilder(buffer: raw.baseAddress!, capacity: raw.count, id: 0xabcd, flags: Header.rd)
            b.question([3, 0x57, 0x77, 0x77, 4, 0x74, 0x65, 0x73, 0x74, 0], type: 1)   // "Www.test"
            return b.count
        }
        send(client, Array(q[..<qlen]), to: listenPort)
        guard let (upQuery, srcPort) = receive(upstream) else { return XCTFail("nothing reached the upstream") }
        let info = upQuery.withUnsafeBytes { QueryParser.parse($0.baseAddress!, count: $0.count) }
        XCTAssertEqual(info.verdict, .query)
        XCTAssertTrue(info.hasEDNS, "upstream queries carry our OPT")
        var a = [UInt8](repeating: 0, count: 512)
        let alen = a.withUnsafeMutableBytes { raw -> Int in
            var b = MessageBuilder(buffer: raw.baseAddress!, capacity: raw.count, id: info.id, flags: Header.qr | Header.rd | Header.ra)
            b.question(Array(upQuery[12..<(12 + info.nameLength)]), type: 1)
            b.record(.answer, owner: Array(upQuery[12..<(12 + info.nameLength)]), type: 1, ttl: 60, rdata: [192, 0, 2, 9])
            return b.count
        }
        send(upstream, Array(a[..<alen]), to: srcPort)
        guard let (answer, _) = receive(client) else { return XCTFail("no answer") }
        XCTAssertEqual(Array(answer[0..<2]), [0xab, 0xcd])
        XCTAssertEqual(Array(answer[12..<22]), [3, 0x57, 0x77, 0x77, 4, 0x74, 0x65, 0x73, 0x74, 0])
        XCTAssertEqual(Array(answer.suffix(4)), [192, 0, 2, 9])
        // Again: answered from the cache, nothing new upstream.
        send(client, Array(q[..<qlen]), to: listenPort)
        XCTAssertNotNil(receive(client))
        var tv = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(upstream, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        XCTAssertNil(receive(upstream))
        XCTAssertEqual(server.counters.cacheHits, 1)
    }
}
