/// Writes the few messages kubebridge makes itself: error answers, truncated answers and
/// OPT records. All write into a caller-provided buffer and return the new length.
public enum ResponseWriter {
    /// Size of the minimal OPT record this server emits (root owner, no options).
    public static let optSize = 11

    /// An answer with `rcode` to the query in `query` (described by `info`), echoing its
    /// question when it could be read. `out` needs `info.questionEnd + optSize` bytes.
    /// BADVERS and any answer to an EDNS query carry an OPT record (RFC 6891 7).
    @inlinable
    public static func error(query: UnsafeRawPointer, info: QueryInfo, rcode: RCode,
                             into out: UnsafeMutableRawPointer, maxUDPSize: UInt16) -> Int {
        let withQuestion = info.questionEnd > 0
        var n = withQuestion ? info.questionEnd : Header.size
        out.copyMemory(from: query, byteCount: n)
        let flags = Header.qr | (info.flags & (Header.opcodeMask | Header.rd | Header.cd)) | Header.ra
            | (rcode.rawValue & Header.rcodeMask)
        Wire.put16(out, Header.flagsOffset, flags)
        Wire.put16(out, Header.qdcountOffset, withQuestion ? 1 : 0)
        Wire.put16(out, Header.ancountOffset, 0)
        Wire.put16(out, Header.nscountOffset, 0)
        Wire.put16(out, Header.arcountOffset, 0)
        if info.hasEDNS || rcode == .badVers {
            n = appendOPT(out, at: n, udpSize: maxUDPSize, dnssecOK: info.dnssecOK,
                          extendedRCodeHigh: UInt8(truncatingIfNeeded: rcode.rawValue >> 4))
        }
        return n
    }

    /// Appends a minimal OPT record and increments ARCOUNT.
    @inlinable
    public static func appendOPT(_ p: UnsafeMutableRawPointer, at n: Int, udpSize: UInt16, dnssecOK: Bool,
                                 extendedRCodeHigh: UInt8 = 0) -> Int {
        p.storeBytes(of: 0, toByteOffset: n, as: UInt8.self)                   // root owner
        Wire.put16(p, n + 1, RRType.opt)
        Wire.put16(p, n + 3, udpSize)
        Wire.put32(p, n + 5, UInt32(extendedRCodeHigh) << 24 | (dnssecOK ? 0x8000 : 0))
        Wire.put16(p, n + 9, 0)
        Wire.put16(p, Header.arcountOffset, UInt16(truncatingIfNeeded: Header.count(p, Header.arcountOffset) + 1))
        return n + optSize
    }

    /// Cuts a response that does not fit the client's UDP size down to header and question
    /// with TC set (RFC 2181 9), so the client retries over TCP.
    @inlinable
    public static func truncate(_ p: UnsafeMutableRawPointer, questionEnd: Int) -> Int {
        Wire.put16(p, Header.flagsOffset, Header.flags(p) | Header.tc)
        Wire.put16(p, Header.ancountOffset, 0)
        Wire.put16(p, Header.nscountOffset, 0)
        Wire.put16(p, Header.arcountOffset, 0)
        return questionEnd
    }
}

/// Builds a message record by record with name compression (RFC 1035 4.1.4): each name
/// written is remembered label by label, and a later name whose suffix matches one of them
/// (ignoring case) ends in a pointer. Used for the queries kubebridge originates (health
/// probes, tests) and for synthesised answers; the forwarding path copies bytes instead.
public struct MessageBuilder {
    public let buffer: UnsafeMutableRawPointer
    public let capacity: Int
    public private(set) var count: Int = Header.size
    public private(set) var overflow = false
    /// Offsets of label starts already written, candidates for pointers (< 0x4000 only).
    private var targets: [Int] = []

    public init(buffer: UnsafeMutableRawPointer, capacity: Int, id: UInt16, flags: UInt16) {
        self.buffer = buffer
        self.capacity = capacity
        guard capacity >= Header.size else { overflow = true; count = 0; return }
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: Header.size)
        Wire.put16(buffer, Header.idOffset, id)
        Wire.put16(buffer, Header.flagsOffset, flags)
    }

    private mutating func reserve(_ n: Int) -> Bool {
        if overflow || count + n > capacity { overflow = true; return false }
        return true
    }

    mutating func bump(_ countOffset: Int) {
        Wire.put16(buffer, countOffset, UInt16(truncatingIfNeeded: Header.count(buffer, countOffset) + 1))
    }

    /// Writes an uncompressed wire name, replacing the longest already-written suffix with a pointer.
    public mutating func name(_ wire: [UInt8]) {
        var labelStarts: [Int] = []
        var i = 0
        while i < wire.count && wire[i] != 0 { labelStarts.append(i); i += Int(wire[i]) + 1 }
        for (k, start) in labelStarts.enumerated() {
            if let target = findSuffix(Array(wire[start...])) {
                let prefixLen = start
                guard reserve(prefixLen + 2) else { return }
                recordTargets(labelStarts[..<k], base: count)
                buffer.advanced(by: count).copyMemory(from: wire, byteCount: prefixLen)
                count += prefixLen
                Wire.put16(buffer, count, 0xC000 | UInt16(target))
                count += 2
                return
            }
        }
        guard reserve(wire.count) else { return }
        recordTargets(labelStarts[...], base: count)
        buffer.advanced(by: count).copyMemory(from: wire, byteCount: wire.count)
        count += wire.count
    }

    private mutating func recordTargets(_ starts: ArraySlice<Int>, base: Int) {
        for s in starts where base + s < 0x4000 { targets.append(base + s) }
    }

    private func findSuffix(_ suffix: [UInt8]) -> Int? {
        var scratch = [UInt8](repeating: 0, count: 256)
        for t in targets {
            var c = WireCursor(UnsafeRawPointer(buffer), count: count, offset: t)
            let n = scratch.withUnsafeMutableBytes { DNSName.expand(&c, into: $0.baseAddress!, fold: true) }
            if c.ok && n == suffix.count && zip(scratch[..<n], suffix).allSatisfy({ DNSName.lower($0) == DNSName.lower($1) }) {
                return t
            }
        }
        return nil
    }

    public mutating func question(_ wire: [UInt8], type: UInt16, class klass: UInt16 = 1) {
        name(wire)
        guard reserve(4) else { return }
        Wire.put16(buffer, count, type); Wire.put16(buffer, count + 2, klass)
        count += 4
        bump(Header.qdcountOffset)
    }

    public enum Section { case answer, authority, additional }

    public mutating func record(_ section: Section, owner: [UInt8], type: UInt16, class klass: UInt16 = 1,
                                ttl: UInt32, rdata: [UInt8]) {
        name(owner)
        guard reserve(10 + rdata.count) else { return }
        Wire.put16(buffer, count, type); Wire.put16(buffer, count + 2, klass)
        Wire.put32(buffer, count + 4, ttl); Wire.put16(buffer, count + 8, UInt16(rdata.count))
        buffer.advanced(by: count + 10).copyMemory(from: rdata, byteCount: rdata.count)
        count += 10 + rdata.count
        switch section {
        case .answer: bump(Header.ancountOffset)
        case .authority: bump(Header.nscountOffset)
        case .additional: bump(Header.arcountOffset)
        }
    }

    /// A record whose RDATA is a single domain name (NS, CNAME, PTR), compressed too.
    public mutating func nameRecord(_ section: Section, owner: [UInt8], type: UInt16, ttl: UInt32, target: [UInt8]) {
        name(owner)
        guard reserve(10) else { return }
        let fixed = count
        Wire.put16(buffer, fixed, type); Wire.put16(buffer, fixed + 2, 1); Wire.put32(buffer, fixed + 4, ttl)
        count += 10
        let before = count
        name(target)
        if overflow { return }
        Wire.put16(buffer, fixed + 8, UInt16(count - before))
        switch section {
        case .answer: bump(Header.ancountOffset)
        case .authority: bump(Header.nscountOffset)
        case .additional: bump(Header.arcountOffset)
        }
    }

    public mutating func opt(udpSize: UInt16, dnssecOK: Bool) {
        guard reserve(ResponseWriter.optSize) else { return }
        count = ResponseWriter.appendOPT(buffer, at: count, udpSize: udpSize, dnssecOK: dnssecOK)
    }

    /// The finished message as an array (tests, probes).
    public var bytes: [UInt8] {
        Array(UnsafeRawBufferPointer(start: buffer, count: count))
    }
}
