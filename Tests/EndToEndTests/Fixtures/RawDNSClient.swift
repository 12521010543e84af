import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 socket address ("127.0.0.1", "::1").
struct SocketAddress {
    let family: Int32
    private var v4 = sockaddr_in()
    private var v6 = sockaddr_in6()

    init(host: String, port: UInt16) throws {
        if host.contains(":") {
            family = AF_INET6
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = port.bigEndian
            guard inet_pton(AF_INET6, host, &v6.sin6_addr) == 1 else { throw E2EError("bad IPv6 address \(host)") }
        } else {
            family = AF_INET
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = port.bigEndian
            guard inet_pton(AF_INET, host, &v4.sin_addr) == 1 else { throw E2EError("bad IPv4 address \(host)") }
        }
    }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        if family == AF_INET6 {
            var a = v6
            return withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
        var a = v4
        return withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }
}

/// Raw UDP/TCP exchanges for what real clients cannot send: garbage, bad headers,
/// pipelined TCP, exact-case questions, fixed IDs.
enum RawDNS {
    /// A connected UDP socket: only datagrams from the server's address and port are received.
    final class UDPSocket {
        let fd: Int32
        init(host: String, port: UInt16) throws {
            let address = try SocketAddress(host: host, port: port)
            fd = socket(address.family, E2E.udpSocketType, 0)
            guard fd >= 0 else { throw E2EError("socket(): errno \(errno)") }
            guard address.withSockaddr({ connect(fd, $0, $1) }) == 0 else {
                close(fd)
                throw E2EError("connect(\(host):\(port)): errno \(errno)")
            }
        }
        deinit { close(fd) }

        func send(_ packet: [UInt8]) throws {
            let n = packet.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
            guard n == packet.count else { throw E2EError("send(): errno \(errno)") }
        }

        /// The next datagram, or nil when none arrives within `timeout`.
        func receive(timeout: TimeInterval) throws -> [UInt8]? {
            let deadline = Date().addingTimeInterval(timeout)
            while true {
                let remaining = deadline.timeIntervalSinceNow
                if remaining <= 0 { return nil }
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let r = poll(&pfd, 1, Int32(max(1, remaining * 1000)))
                if r < 0 && errno == EINTR { continue }
                if r <= 0 { return nil }
                var buffer = [UInt8](repeating: 0, count: 65535)
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n < 0 {
                    if errno == EINTR || errno == EAGAIN { continue }
                    // ECONNREFUSED: nothing listens (an ICMP error came back).
                    throw E2EError("recv(): errno \(errno)")
                }
                return Array(buffer[0..<n])
            }
        }
    }

    /// Sends one datagram and returns the first reply, or nil on timeout.
    static func udp(_ packet: [UInt8], host: String = "127.0.0.1", port: UInt16, timeout: TimeInterval = 5) throws -> [UInt8]? {
        let sock = try UDPSocket(host: host, port: port)
        try sock.send(packet)
        return try sock.receive(timeout: timeout)
    }

    /// A TCP connection speaking length-prefixed DNS.
    final class TCPConnection {
        let fd: Int32
        private var pending: [UInt8] = []

        init(host: String, port: UInt16, timeout: TimeInterval = 2) throws {
            let address = try SocketAddress(host: host, port: port)
            fd = socket(address.family, E2E.tcpSocketType, 0)
            guard fd >= 0 else { throw E2EError("socket(): errno \(errno)") }
            var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            guard address.withSockaddr({ connect(fd, $0, $1) }) == 0 else {
                let e = errno
                close(fd)
                throw E2EError("TCP connect(\(host):\(port)): errno \(e)")
            }
        }
        deinit { close(fd) }

        func sendRaw(_ bytes: [UInt8]) throws {
            var offset = 0
            while offset < bytes.count {
                let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                guard n > 0 else { throw E2EError("TCP send(): errno \(errno)") }
                offset += n
            }
        }

        static func frame(_ message: [UInt8]) -> [UInt8] {
            [UInt8(message.count >> 8), UInt8(message.count & 0xFF)] + message
        }

        /// Sends all messages in a single write (pipelining).
        func send(_ messages: [[UInt8]]) throws {
            try sendRaw(messages.flatMap(TCPConnection.frame))
        }

        /// The next length-prefixed message; nil on timeout or when the server closed the connection.
        func receive(timeout: TimeInterval) throws -> [UInt8]? {
            let deadline = Date().addingTimeInterval(timeout)
            while true {
                if pending.count >= 2 {
                    let length = Int(pending[0]) << 8 | Int(pending[1])
                    if pending.count >= 2 + length {
                        let message = Array(pending[2..<(2 + length)])
                        pending.removeFirst(2 + length)
                        return message
                    }
                }
                let remaining = deadline.timeIntervalSinceNow
                if remaining <= 0 { return nil }
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let r = poll(&pfd, 1, Int32(max(1, remaining * 1000)))
                if r < 0 && errno == EINTR { continue }
                if r <= 0 { return nil }
                var buffer = [UInt8](repeating: 0, count: 65535)
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return nil }
                pending += buffer[0..<n]
            }
        }

        /// True when the server closes the connection (EOF or reset) within `timeout`.
        func isClosedByPeer(timeout: TimeInterval) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while deadline.timeIntervalSinceNow > 0 {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let r = poll(&pfd, 1, Int32(max(1, deadline.timeIntervalSinceNow * 1000)))
                if r <= 0 { continue }
                var buffer = [UInt8](repeating: 0, count: 4096)
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { return true }
            }
            return false
        }
    }
}
