import NetAddress

/// Who may ask. Default: loopback and the private ranges, so a forwarder reachable from
/// the internet by accident is still not an open resolver (RFC 5358).
public struct AccessList: Sendable {
    public static let defaultPrefixes: [String] = [
        "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7", "fe80::/10",
    ]

    /// (network bits, mask bits) pairs per family; a handful of prefixes, scanned linearly.
    @usableFromInline let v4: [(UInt32, UInt32)]
    @usableFromInline let v6: [(UInt64, UInt64, UInt64, UInt64)]
    public let prefixes: [CIDR]

    public init(_ prefixes: [CIDR]) {
        self.prefixes = prefixes
        var v4: [(UInt32, UInt32)] = []
        var v6: [(UInt64, UInt64, UInt64, UInt64)] = []
        for p in prefixes {
            if p.address.family == .v4 {
                let mask: UInt32 = p.prefix == 0 ? 0 : ~0 << UInt32(32 - p.prefix)
                v4.append((p.address.v4Value, mask))
            } else {
                let (mh, ml) = IPAddress.maskBits(prefix: p.prefix, family: .v6)
                v6.append((p.address.high, p.address.low, mh, ml))
            }
        }
        self.v4 = v4
        self.v6 = v6
    }

    public static var standard: AccessList {
        AccessList(defaultPrefixes.map { try! CIDR(parsing: $0) })
    }

    @inlinable
    public func allows(_ a: IPAddress) -> Bool {
        if a.family == .v4 {
            let v = a.v4Value
            for (net, mask) in v4 where v & mask == net { return true }
            return false
        }
        // An IPv4-mapped IPv6 source (::ffff:a.b.c.d on a dual-stack socket) is judged as IPv4.
        if a.high == 0 && a.low >> 32 == 0xffff {
            return allows(IPAddress(v4: UInt32(truncatingIfNeeded: a.low)))
        }
        for (h, l, mh, ml) in v6 where a.high & mh == h && a.low & ml == l { return true }
        return false
    }
}
