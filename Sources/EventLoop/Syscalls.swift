import CLibevent
import CShim
import Glibc
import NetAddress

/// A failed system call, with the errno text a sysadmin can search for.
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let errno: Int32
    public let context: String

    init(_ call: String, _ err: Int32 = Glibc.errno, _ context: String = "") {
        self.call = call
        self.errno = err
        self.context = context
    }

    public var description: String {
        let what = String(cString: strerror(errno))
        return context.isEmpty ? "\(call): \(what)" : "\(context): \(call): \(what)"
    }
}

/// Result of a non-blocking call: EAGAIN is an expected outcome, not an error.
public enum IOResult: Equatable {
    case done(Int)
    case wouldBlock
}

/// Every system call the event loop makes, each wrapped once: EINTR is retried here,
/// EAGAIN/EWOULDBLOCK comes back as `.wouldBlock`, any other failure throws `SystemError`.
enum Sys {
    @inline(__always)
    static func retrying(_ call: String, _ body: () -> Int) throws -> IOResult {
        while true {
            let r = body()
            if r >= 0 { return .done(r) }
            let e = errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            throw SystemError(call, e)
        }
    }

    static func socket(_ domain: Int32, _ type: Int32, _ proto: Int32 = 0) throws -> Int32 {
        let fd = Glibc.socket(domain, type | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), proto)
        if fd < 0 { throw SystemError("socket") }
        return fd
    }

    static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32, _ what: String) throws {
        var v = value
        if setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            throw SystemError("setsockopt(\(what))")
        }
    }

    static func bind(_ fd: Int32, _ addr: SocketAddress) throws {
        var a = addr
        let r = withUnsafePointer(to: &a.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, a.length) }
        }
        if r != 0 { throw SystemError("bind", errno, addr.description) }
    }

    static func listen(_ fd: Int32, _ backlog: Int32) throws {
        if Glibc.listen(fd, backlog) != 0 { throw SystemError("listen") }
    }

    /// Accepts one connection; `.wouldBlock` when none is waiting. Transient errors that a
    /// busy server sees (ECONNABORTED, EMFILE…) also come back as `.wouldBlock` after the
    /// caller's counter is bumped, so one bad client never stops the accept loop.
    static func accept(_ fd: Int32, peer: inout SocketAddress) throws -> IOResult {
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = try retrying("accept4") {
            withUnsafeMutablePointer(to: &peer.storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Int(kb_accept4(fd, $0, &len))
                }
            }
        }
        peer.length = len
        return r
    }

    static func connect(_ fd: Int32, _ addr: SocketAddress) throws -> Bool {
        var a = addr
        while true {
            let r = withUnsafePointer(to: &a.storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, a.length) }
            }
            if r == 0 { return true }
            if errno == EINTR { continue }
            if errno == EINPROGRESS { return false }
            throw SystemError("connect", errno, addr.description)
        }
    }

    static func socketError(_ fd: Int32) -> Int32 {
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 { return errno }
        return err
    }

    @inline(__always)
    static func recvmmsg(_ fd: Int32, _ msgs: UnsafeMutablePointer<kb_mmsghdr>, _ n: Int) throws -> IOResult {
        try retrying("recvmmsg") { Int(kb_recvmmsg(fd, msgs, UInt32(n), Int32(MSG_DONTWAIT))) }
    }

    /// One ICMP (or local) error a datagram we sent provoked: the start of that datagram
    /// (`bytes` in the caller's buffer), where it went, and the errno it amounts to.
    struct QueuedError {
        var bytes: Int
        var destination: Endpoint?
        var errno: Int32
        var fromICMP: Bool
    }

    /// recvmsg(MSG_ERRQUEUE) on a socket with IP_RECVERR/IPV6_RECVERR: nil when the queue is empty.
    static func receiveError(_ fd: Int32, into buffer: UnsafeMutableRawPointer, capacity: Int) throws -> QueuedError? {
        var storage = sockaddr_storage()
        var length = socklen_t(0), got = 0, err: Int32 = 0, icmp: Int32 = 0
        let r = kb_recv_error(fd, buffer, capacity, &got, &storage, &length, &err, &icmp)
        if r < 0 { throw SystemError("recvmsg(MSG_ERRQUEUE)") }
        if r == 0 { return nil }
        let destination = length > 0 ? withUnsafeBytes(of: &storage) { SocketAddress.endpoint($0.baseAddress!) } : nil
        return QueuedError(bytes: got, destination: destination, errno: err, fromICMP: icmp != 0)
    }

    static func enableReceiveErrors(_ fd: Int32, family: Int32) throws {
        if kb_enable_recverr(fd, family) != 0 { throw SystemError(family == AF_INET6 ? "setsockopt(IPV6_RECVERR)" : "setsockopt(IP_RECVERR)") }
    }

    @inline(__always)
    static func sendmmsg(_ fd: Int32, _ msgs: UnsafeMutablePointer<kb_mmsghdr>, _ n: Int) throws -> IOResult {
        try retrying("sendmmsg") { Int(kb_sendmmsg(fd, msgs, UInt32(n), Int32(MSG_DONTWAIT))) }
    }

    @inline(__always)
    static func sendto(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int, _ addr: UnsafePointer<sockaddr>, _ len: socklen_t) throws -> IOResult {
        try retrying("sendto") { Glibc.sendto(fd, p, n, Int32(MSG_DONTWAIT), addr, len) }
    }

    @inline(__always)
    static func read(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ n: Int) throws -> IOResult {
        try retrying("read") { Glibc.read(fd, p, n) }
    }

    @inline(__always)
    static func write(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) throws -> IOResult {
        try retrying("write") { Glibc.send(fd, p, n, Int32(MSG_NOSIGNAL)) }
    }

    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)   // never retried: on Linux the descriptor is gone even after EINTR
    }

    static func eventfd() throws -> Int32 {
        let fd = kb_eventfd()
        if fd < 0 { throw SystemError("eventfd") }
        return fd
    }

    static func signalEventfd(_ fd: Int32) {
        var one: UInt64 = 1
        _ = Glibc.write(fd, &one, 8)
    }

    /// Monotonic milliseconds from the coarse clock: one vDSO read per batch, no syscall.
    @inline(__always)
    static func monotonicMilliseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
        return UInt64(ts.tv_sec) &* 1000 &+ UInt64(ts.tv_nsec) / 1_000_000
    }

    static func randomSeed() -> UInt64 {
        var v: UInt64 = 0
        while kb_getrandom(&v, 8) != 8 {}
        return v
    }
}

/// The addresses configured on this host's interfaces (getifaddrs(3)), so a wildcard
/// listener can recognise a resolv.conf entry that points back at itself.
public enum LocalInterfaces {
    public static func addresses() -> [IPAddress] {
        var head: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&head) == 0 else { return [] }
        defer { freeifaddrs(head) }
        var out: [IPAddress] = []
        var p = head
        while let ifa = p {
            if let sa = ifa.pointee.ifa_addr, let ep = SocketAddress.endpoint(UnsafeRawPointer(sa)) {
                out.append(ep.address)
            }
            p = ifa.pointee.ifa_next
        }
        return out
    }
}
