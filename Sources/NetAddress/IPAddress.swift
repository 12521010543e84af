/// An IPv4 or IPv6 address held as 16 bytes, so that access lists, reverse zones and
/// routes compare addresses of both families with the same integer operations.
/// IPv4 addresses are stored in the first four bytes (`high`'s top 32 bits), not as
/// IPv4-mapped IPv6, because the route helper and the reverse-zone builder need the family.
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    public enum Family: Sendable { case v4, v6 }

    public let family: Family
    /// Network-order bits: `high` holds bytes 0..7, `low` bytes 8..15.
    public let high: UInt64
    public let low: UInt64

    public init(v4 value: UInt32) {
        family = .v4
        high = UInt64(value) << 32
        low = 0
    }

    public init(v6High: UInt64, low: UInt64) {
        family = .v6
        high = v6High
        self.low = low
    }

    /// Builds an address from 4 or 16 network-order bytes.
    public init?(bytes: UnsafeRawBufferPointer) {
        if bytes.count == 4 {
            var v: UInt32 = 0
            for b in bytes { v = v << 8 | UInt32(b) }
            self.init(v4: v)
        } else if bytes.count == 16 {
            var h: UInt64 = 0, l: UInt64 = 0
            for i in 0..<8 { h = h << 8 | UInt64(bytes[i]) }
            for i in 8..<16 { l = l << 8 | UInt64(bytes[i]) }
            self.init(v6High: h, low: l)
        } else {
            return nil
        }
    }

    public var v4Value: UInt32 { UInt32(truncatingIfNeeded: high >> 32) }
    public var bitWidth: Int { family == .v4 ? 32 : 128 }

    /// Network-order bytes: 4 for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        let n = family == .v4 ? 4 : 16
        out.reserveCapacity(n)
        for i in 0..<n { out.append(byte(i)) }
        return out
    }

    public func byte(_ i: Int) -> UInt8 {
        i < 8 ? UInt8(truncatingIfNeeded: high >> UInt64(56 - 8 * i))
              : UInt8(truncatingIfNeeded: low >> UInt64(56 - 8 * (i - 8)))
    }

    /// The address with every bit after the first `prefix` bits cleared.
    public func masked(_ prefix: Int) -> IPAddress {
        let (mh, ml) = IPAddress.maskBits(prefix: prefix, family: family)
        return family == .v4 ? IPAddress(v4: UInt32(truncatingIfNeeded: (high & mh) >> 32))
                             : IPAddress(v6High: high & mh, low: low & ml)
    }

    /// (high, low) masks with the first `prefix` bits set.
    public static func maskBits(prefix: Int, family: Family) -> (UInt64, UInt64) {
        let p = family == .v4 ? min(prefix, 32) : min(prefix, 128)
        let h: UInt64 = p >= 64 ? ~0 : (p == 0 ? 0 : ~0 << UInt64(64 - p))
        let l: UInt64 = p <= 64 ? 0 : (p >= 128 ? ~0 : ~0 << UInt64(128 - p))
        return (h, l)
    }

    public var isLoopback: Bool {
        family == .v4 ? (v4Value >> 24) == 127 : (high == 0 && low == 1)
    }

    public var isUnspecified: Bool { high == 0 && low == 0 }

    public init?(_ text: some StringProtocol) {
        if text.contains(":") {
            guard let v = IPAddress.parseV6(Substring(text)) else { return nil }
            self = v
        } else {
            guard let v = IPAddress.parseV4(Substring(text)) else { return nil }
            self.init(v4: v)
        }
    }

    static func parseV4(_ s: Substring) -> UInt32? {
        var value: UInt32 = 0
        var parts = 0
        for part in s.split(separator: ".", omittingEmptySubsequences: false) {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let n = UInt32(part), n <= 255 else { return nil }
            // Leading zeros are ambiguous (octal in inet_aton); reject them like inet_pton.
            if part.count > 1 && part.first == "0" { return nil }
            value = value << 8 | n
            parts += 1
        }
        return parts == 4 ? value : nil
    }

    static func parseV6(_ s: Substring) -> IPAddress? {
        var groups: [UInt16] = []
        var tail: [UInt16] = []
        var sawDouble = false
        // Split on every "::" (left to right, non-overlapping) without Foundation.
        var pieces: [String] = []
        var current = ""
        var rest = Substring(s)
        while let c = rest.first {
            if rest.hasPrefix("::") {
                pieces.append(current)
                current = ""
                rest = rest.dropFirst(2)
            } else {
                current.append(c)
                rest = rest.dropFirst()
            }
        }
        pieces.append(current)
        if pieces.count > 2 { return nil }
        func parseGroups(_ str: String, allowV4Tail: Bool) -> [UInt16]? {
            if str.isEmpty { return [] }
            var out: [UInt16] = []
            let fields = str.split(separator: ":", omittingEmptySubsequences: false)
            for (i, f) in fields.enumerated() {
                if i == fields.count - 1 && allowV4Tail && f.contains(".") {
                    guard let v4 = parseV4(f) else { return nil }
                    out.append(UInt16(v4 >> 16)); out.append(UInt16(v4 & 0xffff))
                    continue
                }
                guard !f.isEmpty, f.count <= 4, let n = UInt16(f, radix: 16) else { return nil }
                out.append(n)
            }
            return out
        }
        if pieces.count == 2 {
            sawDouble = true
            guard let a = parseGroups(pieces[0], allowV4Tail: false),
                  let b = parseGroups(pieces[1], allowV4Tail: true) else { return nil }
            groups = a; tail = b
            if groups.count + tail.count > 7 { return nil }
        } else {
            guard let a = parseGroups(pieces[0], allowV4Tail: true) else { return nil }
            groups = a
            if groups.count != 8 { return nil }
        }
        var all = groups
        if sawDouble { all += Array(repeating: 0, count: 8 - groups.count - tail.count) + tail }
        var h: UInt64 = 0, l: UInt64 = 0
        for i in 0..<4 { h = h << 16 | UInt64(all[i]) }
        for i in 4..<8 { l = l << 16 | UInt64(all[i]) }
        return IPAddress(v6High: h, low: l)
    }

    public var description: String {
        if family == .v4 {
            let v = v4Value
            return "\(v >> 24).\((v >> 16) & 255).\((v >> 8) & 255).\(v & 255)"
        }
        var g = [UInt16](repeating: 0, count: 8)
        for i in 0..<4 { g[i] = UInt16(truncatingIfNeeded: high >> UInt64(48 - 16 * i)) }
        for i in 0..<4 { g[4 + i] = UInt16(truncatingIfNeeded: low >> UInt64(48 - 16 * i)) }
        // RFC 5952: compress the longest run (length >= 2) of zero groups, first one on ties.
        var bestStart = -1, bestLen = 0, i = 0
        while i < 8 {
            if g[i] == 0 {
                var j = i
                while j < 8 && g[j] == 0 { j += 1 }
                if j - i > bestLen && j - i >= 2 { bestStart = i; bestLen = j - i }
                i = j
            } else { i += 1 }
        }
        func hex(_ r: Range<Int>) -> String { r.map { String(g[$0], radix: 16) }.joined(separator: ":") }
        if bestStart < 0 { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLen)..<8)
    }
}

extension IPAddress: Comparable {
    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        if a.family != b.family { return a.family == .v4 }
        return a.high != b.high ? a.high < b.high : a.low < b.low
    }
}
