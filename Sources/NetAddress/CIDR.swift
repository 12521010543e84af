/// An address prefix such as `172.20.0.0/16` or `fd00:10::/64`. Host bits must be zero
/// when parsed, because `172.20.1.0/16` is almost always a typo for a different network
/// and silently masking it would install or forward the wrong range.
public struct CIDR: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let prefix: Int

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case notACIDR(String)
        case badPrefix(String)
        case hostBitsSet(String, suggestion: String)

        public var description: String {
            switch self {
            case .notACIDR(let s): return "'\(s)' is not an address prefix (expected e.g. 172.20.0.0/16 or fd00::/64)"
            case .badPrefix(let s): return "'\(s)' has a prefix length out of range (0-32 for IPv4, 0-128 for IPv6)"
            case .hostBitsSet(let s, let fix): return "'\(s)' has host bits set; did you mean \(fix)?"
            }
        }
    }

    public init(address: IPAddress, prefix: Int) {
        self.address = address.masked(prefix)
        self.prefix = prefix
    }

    public init(parsing text: String) throws {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let addr = IPAddress(parts[0]) else { throw ParseError.notACIDR(text) }
        guard let p = Int(parts[1]), p >= 0, p <= addr.bitWidth, parts[1].allSatisfy(\.isNumber) else {
            throw ParseError.badPrefix(text)
        }
        let masked = addr.masked(p)
        if masked != addr { throw ParseError.hostBitsSet(text, suggestion: "\(masked)/\(p)") }
        self.address = addr
        self.prefix = p
    }

    public func contains(_ a: IPAddress) -> Bool {
        a.family == address.family && a.masked(prefix) == address
    }

    /// True when the two prefixes share at least one address.
    public func overlaps(_ other: CIDR) -> Bool {
        guard other.address.family == address.family else { return false }
        return prefix <= other.prefix ? contains(other.address) : other.contains(address)
    }

    /// The netmask in dotted form (IPv4 only), as Windows `route add` and Cisco IOS want it.
    public var netmaskV4: IPAddress? {
        guard address.family == .v4 else { return nil }
        return IPAddress(v4: prefix == 0 ? 0 : ~UInt32(0) << UInt32(32 - prefix))
    }

    public var description: String { "\(address)/\(prefix)" }
}
