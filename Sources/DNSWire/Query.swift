/// What the server does with an incoming datagram or TCP message, decided from its bytes
/// alone (RFC 1035 4.1, RFC 6891 6.1.3): the forwarder acts on this without re-reading.
public enum QueryVerdict: UInt8, Sendable {
    /// A well-formed standard query: forward or answer from cache.
    case query
    /// Not worth an answer: shorter than a header, or a response (QR=1) that could be reflected.
    case drop
    /// Readable header, malformed body: answer FORMERR.
    case formErr
    /// Opcode other than QUERY: answer NOTIMP.
    case notImp
    /// EDNS version other than 0: answer BADVERS (RFC 6891 6.1.3).
    case badVers
    /// Zone transfers are not forwarded: answer REFUSED.
    case refused
}

/// The parsed facts of one query, all offsets into the caller's buffer. A plain value
/// with no references, so it can be kept per in-flight query without allocation.
public struct QueryInfo: Sendable {
    public var verdict: QueryVerdict = .drop
    public var id: UInt16 = 0
    public var flags: UInt16 = 0
    /// The question name starts at offset 12 and is `nameLength` bytes long (uncompressed).
    public var nameLength: Int = 0
    public var labelCount: Int = 0
    public var qtype: UInt16 = 0
    public var qclass: UInt16 = 0
    /// Offset just past the question (type and class).
    public var questionEnd: Int = 0
    public var hasEDNS: Bool = false
    /// Advertised UDP payload size; 512 when there is no OPT or it advertises less.
    public var udpSize: UInt16 = 512
    public var dnssecOK: Bool = false
    public var ednsVersion: UInt8 = 0
    public var error: WireError?

    public init() {}

    @inlinable public var recursionDesired: Bool { flags & Header.rd != 0 }
    @inlinable public var checkingDisabled: Bool { flags & Header.cd != 0 }
    @inlinable public var authenticData: Bool { flags & Header.ad != 0 }
}

public enum QueryParser {
    /// Parses a query in place. Never reads outside `count` bytes; never traps.
    @inlinable
    public static func parse(_ p: UnsafeRawPointer, count: Int) -> QueryInfo {
        var q = QueryInfo()
        guard count >= Header.size else { return q }                  // drop
        q.id = Header.id(p)
        q.flags = Header.flags(p)
        if q.flags & Header.qr != 0 { return q }                       // drop: never answer a response
        if q.flags & Header.opcodeMask != 0 { q.verdict = .notImp; return q }
        let qd = Header.count(p, Header.qdcountOffset)
        let an = Header.count(p, Header.ancountOffset)
        let ns = Header.count(p, Header.nscountOffset)
        let ar = Header.count(p, Header.arcountOffset)
        guard qd == 1, an == 0, ns == 0 else { q.verdict = .formErr; q.error = .countMismatch; return q }
        // The question name, scanned with plain indexes: this loop runs for every query.
        var i = Header.size
        var labels = 0
        while true {
            guard i < count else { q.verdict = .formErr; q.error = .truncated; return q }
            let len = Int(p.load(fromByteOffset: i, as: UInt8.self))
            if len == 0 { break }
            if len > DNSName.maxLabel {
                q.verdict = .formErr
                q.error = len & 0xC0 == 0xC0 ? .pointerInQuestion : .badLabelType
                return q
            }
            i += len + 1
            labels += 1
            if i - Header.size + 1 > DNSName.maxLength { q.verdict = .formErr; q.error = .nameTooLong; return q }
        }
        let len = i + 1 - Header.size
        guard count - (i + 1) >= 4 else { q.verdict = .formErr; q.error = .truncated; return q }
        q.qtype = Wire.u16(p, i + 1)
        q.qclass = Wire.u16(p, i + 3)
        q.nameLength = len
        q.labelCount = labels
        q.questionEnd = i + 5
        if ar == 0 {
            // Junk after the question is a malformed query (Knot and BIND say FORMERR too);
            // forwarding it would make us the amplifier of whatever rides along.
            if q.questionEnd != count { q.verdict = .formErr; q.error = .trailingData; return q }
            if q.qtype == RRType.axfr || q.qtype == RRType.ixfr { q.verdict = .refused; return q }
            q.verdict = .query
            return q
        }
        var c = WireCursor(p, count: count, offset: q.questionEnd)
        // Additional section: find the one OPT record, skip anything else (e.g. TSIG).
        var k = 0
        while k < ar {
            let ownerAt = c.offset
            DNSName.skip(&c)
            let ownerIsRoot = c.ok && c.offset == ownerAt + 1
            let type = c.u16()
            let klass = c.u16()
            let ttl = c.u32()
            let rdlen = Int(c.u16())
            c.skip(rdlen)
            guard c.ok else { q.verdict = .formErr; q.error = c.error; return q }
            if type == RRType.opt {
                if q.hasEDNS { q.verdict = .formErr; q.error = .duplicateOPT; return q }
                if !ownerIsRoot { q.verdict = .formErr; q.error = .badOPT; return q }
                q.hasEDNS = true
                q.udpSize = max(512, klass)
                q.ednsVersion = UInt8(truncatingIfNeeded: ttl >> 16)
                q.dnssecOK = ttl & 0x8000 != 0
            }
            k += 1
        }
        if c.offset != count { q.verdict = .formErr; q.error = .trailingData; return q }
        if q.hasEDNS && q.ednsVersion != 0 { q.verdict = .badVers; return q }
        if q.qtype == RRType.axfr || q.qtype == RRType.ixfr { q.verdict = .refused; return q }
        q.verdict = .query
        return q
    }
}
