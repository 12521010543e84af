/// Facts about an upstream response, gathered in one walk over its records so that the
/// cache and the forwarder never parse it twice.
public struct ResponseInfo: Sendable {
    public var id: UInt16 = 0
    public var flags: UInt16 = 0
    public var nameLength: Int = 0
    public var qtype: UInt16 = 0
    public var qclass: UInt16 = 0
    public var questionEnd: Int = 0
    /// Offset just past the last record. Bytes after it (padding, garbage) belong to no
    /// record: a copy that keeps them and then appends an OPT record makes the OPT unreadable.
    public var end: Int = 0
    public var answerCount: Int = 0
    /// Smallest TTL over answer, authority and additional records (OPT excluded); nil when there are none.
    public var minTTL: UInt32? = nil
    /// RFC 2308 negative TTL: min(SOA TTL, SOA MINIMUM) of the first SOA in the authority section.
    public var negativeTTL: UInt32? = nil
    /// Byte range of the OPT record, if any, so it can be cut out.
    public var optStart: Int = -1
    public var optEnd: Int = -1
    /// Upper 8 bits of the extended rcode carried in OPT.
    public var extendedRCodeHigh: UInt8 = 0
    public var error: WireError?

    public init() {}

    @inlinable public var rcode: UInt16 { flags & Header.rcodeMask }
    @inlinable public var truncated: Bool { flags & Header.tc != 0 }
    @inlinable public var ok: Bool { error == nil }
}

public enum ResponseParser {
    /// Validates a whole response: header, exactly one uncompressed question, every record
    /// within bounds with names that decompress safely. Anything else sets `error`.
    @inlinable
    public static func parse(_ p: UnsafeRawPointer, count: Int) -> ResponseInfo {
        var r = ResponseInfo()
        guard count >= Header.size else { r.error = .truncated; return r }
        r.id = Header.id(p)
        r.flags = Header.flags(p)
        let qd = Header.count(p, Header.qdcountOffset)
        let an = Header.count(p, Header.ancountOffset)
        let ns = Header.count(p, Header.nscountOffset)
        let ar = Header.count(p, Header.arcountOffset)
        guard qd == 1 else { r.error = .countMismatch; return r }
        var c = WireCursor(p, count: count, offset: Header.size)
        let (len, _) = DNSName.scanUncompressed(&c)
        r.qtype = c.u16()
        r.qclass = c.u16()
        guard c.ok else { r.error = c.error; return r }
        r.nameLength = len
        r.questionEnd = c.offset
        r.answerCount = an
        let total = an + ns + ar
        var i = 0
        while i < total {
            let start = c.offset
            DNSName.skip(&c)
            let ownerIsRoot = c.ok && c.offset == start + 1
            let type = c.u16()
            c.skip(2)
            let ttl = c.u32()
            let rdlen = Int(c.u16())
            let rdata = c.offset
            c.skip(rdlen)
            guard c.ok else { r.error = c.error; return r }
            if type == RRType.opt && i >= an + ns {
                if r.optStart >= 0 { r.error = .duplicateOPT; return r }
                if !ownerIsRoot { r.error = .badOPT; return r }
                r.optStart = start
                r.optEnd = c.offset
                r.extendedRCodeHigh = UInt8(truncatingIfNeeded: ttl >> 24)
            } else {
                let eff = ttl > 0x7fff_ffff ? 0 : ttl   // RFC 2181 8: a TTL with the top bit set counts as zero
                r.minTTL = min(r.minTTL ?? eff, eff)
                if type == RRType.soa && i >= an && i < an + ns && r.negativeTTL == nil {
                    var s = WireCursor(p, count: c.offset, offset: rdata)
                    DNSName.skip(&s)        // MNAME
                    DNSName.skip(&s)        // RNAME
                    s.skip(16)              // SERIAL REFRESH RETRY EXPIRE
                    let minimum = s.u32()
                    if s.ok { r.negativeTTL = min(eff, minimum > 0x7fff_ffff ? 0 : minimum) }
                }
            }
            i += 1
        }
        r.end = c.offset
        return r
    }

    /// Subtracts `elapsed` seconds from every TTL (never below `floor`), or sets every TTL
    /// to `override` when given. The message must have passed `parse` and hold no OPT.
    @inlinable
    public static func ageTTLs(_ p: UnsafeMutableRawPointer, count: Int, questionEnd: Int,
                               elapsed: UInt32, override: UInt32? = nil) {
        // Only the additional section's OPT is not a record with a TTL (as in `parse`): a
        // type-41 record in the answer or authority section is aged like any other.
        let additionalFrom = Header.count(p, Header.ancountOffset) + Header.count(p, Header.nscountOffset)
        let total = additionalFrom + Header.count(p, Header.arcountOffset)
        var c = WireCursor(UnsafeRawPointer(p), count: count, offset: questionEnd)
        var i = 0
        while i < total && c.ok {
            DNSName.skip(&c)
            let type = c.u16()
            c.skip(2)
            let at = c.offset
            let ttl = c.u32()
            let rdlen = Int(c.u16())
            c.skip(rdlen)
            guard c.ok else { return }
            if type != RRType.opt || i < additionalFrom {
                let new: UInt32
                if let o = override { new = o } else { new = ttl > elapsed ? ttl - elapsed : 0 }
                Wire.put32(p, at, new)
            }
            i += 1
        }
    }

    /// Records the offset of every record's TTL field (OPT excluded) in `out`, so a cache
    /// can age an answer without walking it again. Returns the number of offsets, or -1
    /// when there are more than `max` records or the message does not walk cleanly.
    public static func ttlOffsets(_ p: UnsafeRawPointer, count: Int, questionEnd: Int,
                                  into out: UnsafeMutablePointer<UInt16>, max: Int) -> Int {
        let additionalFrom = Header.count(p, Header.ancountOffset) + Header.count(p, Header.nscountOffset)
        let total = additionalFrom + Header.count(p, Header.arcountOffset)
        var c = WireCursor(p, count: count, offset: questionEnd)
        var n = 0
        var i = 0
        while i < total {
            DNSName.skip(&c)
            let type = c.u16()
            c.skip(2)
            let at = c.offset
            c.skip(4)
            let rdlen = Int(c.u16())
            c.skip(rdlen)
            guard c.ok else { return -1 }
            if type != RRType.opt || i < additionalFrom {
                if n == max || at > Int(UInt16.max) { return -1 }
                out[n] = UInt16(at)
                n += 1
            }
            i += 1
        }
        return n
    }

    /// Removes the additional section's OPT record, bytes `start..<end` as `parse` found
    /// them, from a message of `count` bytes, and fixes ARCOUNT. Returns the new length.
    ///
    /// The OPT is normally the last record, and then this only cuts it off. Anything after
    /// it is cut off with it: in practice a TSIG or SIG(0) record, which no longer verifies
    /// once the answer goes out under another ID, or bytes that are no record at all.
    /// Moving later records down instead would corrupt every compression pointer into them
    /// (e.g. a second glue record whose owner name points at the first one's).
    @inlinable
    public static func removeAdditional(_ p: UnsafeMutableRawPointer, count: Int, start: Int, end: Int) -> Int {
        let additional = Header.count(p, Header.arcountOffset)
        if end < count {
            // Count the records before the OPT: those stay.
            var c = WireCursor(UnsafeRawPointer(p), count: start, offset: Header.size)
            _ = DNSName.scanUncompressed(&c)
            c.skip(4)
            var records = 0
            while c.ok && c.offset < start {
                DNSName.skip(&c)
                c.skip(8)
                c.skip(Int(c.u16()))
                records += 1
            }
            let kept = records - Header.count(p, Header.ancountOffset) - Header.count(p, Header.nscountOffset)
            if c.ok && c.offset == start && kept >= 0 && kept < additional {
                Wire.put16(p, Header.arcountOffset, UInt16(kept))
                return start
            }
            // Not a record boundary that `parse` reported: remove just these bytes.
            (p + start).copyMemory(from: p + end, byteCount: count - end)
            Wire.put16(p, Header.arcountOffset, UInt16(additional - 1))
            return count - (end - start)
        }
        Wire.put16(p, Header.arcountOffset, UInt16(additional - 1))
        return start
    }
}
