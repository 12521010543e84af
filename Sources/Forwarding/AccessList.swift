import NetAddress

/// Who may ask. Default: loopback and the private ranges, so a forwarder reachable from
/// the internet by accident is still not an open resolver (RFC 5358). The prefixes are
/// kept in flat arrays and scanned linearly: a handful of entries, no reference counting.
public final class AccessList: @unchecked Sendable {
    public static let defaultPrefixes: [String] = [
        "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7", "fe80::/10",
    ]

    public let prefixes: [CIDR]
    /// (network, mask) for IPv4; (high, low, high mask, low mask) for IPv6.
    @usableFromInline let v4: UnsafeMutablePointer<(UInt32, UInt32)>
    @usableFromInline let v4Count: Int
    @usableFromInline let v6: UnsafeMutablePointer<(UInt64, UInt64, UInt64, UInt64)>
    @usableFromInline let v6Count: Int

    public init(_ prefixes: [CIDR]) {
        self.prefixes = prefixes
        let four = prefixes.filter { $0.address.family == .v4 }
        let six = prefixes.filter { $0.address.family == .v6 }
        v4 = .allocate(capacity: max(1, four.count))
        v6 = .allocate(capacity: max(1, six.count))
        v4Count = four.count
        v6Count = six.count
        for (i, p) in four.enumerated() {
            let mask: UInt32 = p.prefix == 0 ? 0 : ~0 << UInt32(32 - p.prefix)
            v4[i] = (p.address.v4Value, mask)
        }
        for (i, p) in six.enumerated() {
            let (mh, ml) = IPAddress.maskBits(prefix: p.prefix, family: .v6)
            v6[i] = (p.address.high, p.address.low, mh, ml)
        }
    }

    deinit {
        v4.deallocate()
        v6.deallocate()
    }

    public static var standard: AccessList {
        AccessList(defaultPrefixes.map { try! CIDR(parsing: $0) })
    }

    @inlinable
    public func allows(_ a: IPAddress) -> Bool {
        if a.family == .v4 { return allowsV4(a.v4Value) }
        // An IPv4-mapped IPv6 source (::ffff:a.b.c.d on a dual-stack socket) is judged as IPv4.
        if a.high == 0 && a.low >> 32 == 0xffff { return allowsV4(UInt32(truncatingIfNeeded: a.low)) }
        var i = 0
        while i < v6Count {
            let (h, l, mh, ml) = v6[i]
            if a.high & mh == h && a.low & ml == l { return true }
            i += 1
        }
        return false
    }

    @inlinable
    func allowsV4(_ v: UInt32) -> Bool {
        var i = 0
        while i < v4Count {
            let (net, mask) = v4[i]
            if v & mask == net { return true }
            i += 1
        }
        return false
    }
}
