import CLibevent
import Glibc
import NetAddress

/// A `sockaddr_storage` with its length, converted to and from `Endpoint` once at set-up;
/// the packet path only copies these bytes.
public struct SocketAddress: CustomStringConvertible {
    var storage = sockaddr_storage()
    var length: socklen_t = 0

    init() {}

    public init(_ e: Endpoint) {
        if e.address.family == .v4 {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = e.port.bigEndian
            sin.sin_addr.s_addr = e.address.v4Value.bigEndian
            withUnsafeMutableBytes(of: &storage) { dst in withUnsafeBytes(of: sin) { dst.copyMemory(from: $0) } }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        } else {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = e.port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { b in
                for i in 0..<16 { b[i] = e.address.byte(i) }
            }
            withUnsafeMutableBytes(of: &storage) { dst in withUnsafeBytes(of: sin6) { dst.copyMemory(from: $0) } }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        }
    }

    var family: Int32 { Int32(storage.ss_family) }

    public var endpoint: Endpoint? { SocketAddress.endpoint(UnsafeRawPointer(withUnsafePointer(to: storage) { UnsafeRawPointer($0) })) }

    /// Reads address and port out of a raw sockaddr (IPv4 or IPv6).
    @inline(__always)
    static func endpoint(_ p: UnsafeRawPointer) -> Endpoint? {
        let family = Int32(p.load(as: sa_family_t.self))
        if family == AF_INET {
            let port = UInt16(bigEndian: p.load(fromByteOffset: 2, as: UInt16.self))
            let a = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
            return Endpoint(address: IPAddress(v4: a), port: port)
        }
        if family == AF_INET6 {
            let port = UInt16(bigEndian: p.load(fromByteOffset: 2, as: UInt16.self))
            let h = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            let l = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
            return Endpoint(address: IPAddress(v6High: h, low: l), port: port)
        }
        return nil
    }

    public var description: String { endpoint?.description ?? "?" }
}
