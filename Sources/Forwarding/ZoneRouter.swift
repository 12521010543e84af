import DNSWire
import NetAddress

/// Chooses the server group for a query name: the zone with the most labels that is a
/// suffix of the name on a label boundary, compared without case. `notcluster.local`
/// never matches `cluster.local`, and `cluster.local.example.test` never matches it either.
///
/// Zones are kept lower-cased in one flat byte buffer, longest (most labels) first, so a
/// lookup walks the query name's label starts once and then compares each zone against
/// the suffix with the same number of labels: no allocation and no reference counting
/// on the query path. Built once from the configuration, immutable afterwards.
public final class ZoneRouter: @unchecked Sendable {
    public struct Zone: Sendable {
        public let wire: [UInt8]
        public let labels: Int
        public let group: Int
    }

    /// For logs and tests; the query path reads the flat copies below.
    public private(set) var zones: [Zone] = []
    /// Group for names under no zone (the root): the public upstreams.
    public let defaultGroup: Int

    @usableFromInline var bytes = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 8)
    /// Per zone: offset into `bytes`, wire length, label count, group.
    @usableFromInline var table = UnsafeMutablePointer<(Int32, Int32, Int32, Int32)>.allocate(capacity: 1)
    @usableFromInline var count = 0

    public init(defaultGroup: Int) {
        self.defaultGroup = defaultGroup
    }

    deinit {
        bytes.deallocate()
        table.deallocate()
    }

    public enum RouteError: Error, Equatable, CustomStringConvertible {
        case duplicateZone(String)
        public var description: String {
            switch self {
            case .duplicateZone(let z): return "zone \(z) is configured twice"
            }
        }
    }

    /// Adds a zone (wire form). A zone configured twice is an error: which servers answer
    /// must never depend on the order of lines in a file.
    public func add(zone wire: [UInt8], group: Int) throws {
        let lowered = wire.map(DNSName.lower)
        if zones.contains(where: { $0.wire == lowered }) { throw RouteError.duplicateZone(DNSName.text(lowered)) }
        var labels = 0, i = 0
        while i < lowered.count && lowered[i] != 0 { labels += 1; i += Int(lowered[i]) + 1 }
        zones.append(Zone(wire: lowered, labels: labels, group: group))
        // Most labels first, so the first match is the longest.
        zones.sort { $0.labels > $1.labels }
        rebuild()
    }

    private func rebuild() {
        bytes.deallocate()
        table.deallocate()
        let total = zones.reduce(0) { $0 + $1.wire.count }
        bytes = .allocate(byteCount: max(1, total), alignment: 8)
        table = .allocate(capacity: max(1, zones.count))
        var at = 0
        for (k, z) in zones.enumerated() {
            z.wire.withUnsafeBytes { (bytes + at).copyMemory(from: $0.baseAddress!, byteCount: z.wire.count) }
            table[k] = (Int32(at), Int32(z.wire.count), Int32(z.labels), Int32(z.group))
            at += z.wire.count
        }
        count = zones.count
    }

    /// The group for an uncompressed wire name of `length` bytes with `labelCount` labels.
    @inlinable
    public func route(name: UnsafeRawPointer, length: Int, labelCount: Int) -> Int {
        if count == 0 { return defaultGroup }
        // Label start offsets, at most 127 labels in a 255-byte name; kept on the stack.
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 128) { starts in
            var n = 0, i = 0
            while i < length && n < 128 {
                let len = Int(name.load(fromByteOffset: i, as: UInt8.self))
                if len == 0 { break }
                starts[n] = UInt8(truncatingIfNeeded: i)
                n += 1
                i += len + 1
            }
            var k = 0
            while k < count {
                let (off, zlen, zlabels, group) = table[k]
                k += 1
                let labels = Int(zlabels)
                if labels > n { continue }
                let start = labels == 0 ? length - 1 : Int(starts[n - labels])
                if length - start == Int(zlen)
                    && DNSName.equalIgnoringCase(name + start, bytes + Int(off), length: Int(zlen)) {
                    return Int(group)
                }
            }
            return defaultGroup
        }
    }

    /// Convenience for tests and logs.
    public func route(text: String) -> Int {
        guard let w = try? DNSName.wire(fromText: text) else { return defaultGroup }
        var labels = 0, i = 0
        while i < w.count && w[i] != 0 { labels += 1; i += Int(w[i]) + 1 }
        return w.withUnsafeBytes { route(name: $0.baseAddress!, length: w.count, labelCount: labels) }
    }
}

/// The reverse-lookup zones that cover exactly one address prefix (RFC 1035 3.5 for
/// in-addr.arpa, RFC 3596 2.5 for ip6.arpa). A prefix that does not end on an octet
/// (IPv4) or nibble (IPv6) boundary is covered by several zones one level down:
/// 10.96.0.0/12 becomes 96.10.in-addr.arpa … 111.10.in-addr.arpa, so PTR queries for
/// neighbouring networks are not sent to kube-dns by mistake.
public enum ReverseZones {
    public static func zones(for cidr: CIDR) -> [String] {
        let a = cidr.address
        if a.family == .v4 {
            let octets = (cidr.prefix + 7) / 8
            let spare = octets * 8 - cidr.prefix
            let fixed = (0..<octets).map { Int(a.byte($0)) }
            return (0..<(1 << spare)).map { k in
                var parts = fixed
                if octets > 0 { parts[octets - 1] += k }
                return (parts.reversed().map(String.init) + ["in-addr", "arpa"]).joined(separator: ".")
            }
        }
        let nibbles = (cidr.prefix + 3) / 4
        let spare = nibbles * 4 - cidr.prefix
        let fixed = (0..<nibbles).map { i -> Int in
            let b = Int(a.byte(i / 2))
            return i % 2 == 0 ? b >> 4 : b & 0xf
        }
        return (0..<(1 << spare)).map { k in
            var parts = fixed
            if nibbles > 0 { parts[nibbles - 1] += k }
            return (parts.reversed().map { String($0, radix: 16) } + ["ip6", "arpa"]).joined(separator: ".")
        }
    }
}
