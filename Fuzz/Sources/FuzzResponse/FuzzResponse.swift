import DNSWire
import FuzzSupport

/// Upstream answers: `ResponseParser.parse` on arbitrary bytes, then, for every message it
/// accepts, the rewrites the forwarder applies before caching and answering
/// (`removeAdditional` of the OPT, `ageTTLs`, `truncate`, `appendOPT`): each result must
/// still parse, with the same question and records. `DNSName.skip` and `DNSName.expand`
/// (folded and not) must agree on every owner name.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzResponse(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = size > 0 ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    let r = parseResponse(bytes)
    func ctx() -> String { "response \(hexString(bytes))" }
    if size < Header.size { fuzzCheck(r.error != nil, "short message accepted; \(ctx())"); return 0 }
    guard r.error == nil else { return 0 }
    fuzzCheck(r.id == u16(bytes, 0) && r.flags == u16(bytes, 2) && r.answerCount == Int(u16(bytes, 6)), "header facts; \(ctx())")
    fuzzCheck(r.nameLength >= 1 && r.questionEnd == Header.size + r.nameLength + 4 && r.questionEnd <= size, "question; \(ctx())")
    if r.optStart >= 0 {
        fuzzCheck(r.optStart >= r.questionEnd && r.optEnd - r.optStart >= ResponseWriter.optSize && r.optEnd <= size,
                  "OPT range \(r.optStart)..<\(r.optEnd); \(ctx())")
        fuzzCheck(bytes[r.optStart] == 0 && u16(bytes, r.optStart + 1) == RRType.opt, "OPT bytes; \(ctx())")
    } else {
        fuzzCheck(r.optEnd < 0 && r.extendedRCodeHigh == 0, "OPT facts without OPT; \(ctx())")
    }
    fuzzCheck(r.end >= r.questionEnd && r.end <= size && (r.optEnd < 0 || r.optEnd <= r.end), "end \(r.end); \(ctx())")
    let owners = checkNames(bytes, r, ctx)

    // Canonical form, as the forwarder caches it: OPT removed (with anything after it).
    var canonical = Array(bytes[..<r.end])
    if r.optStart >= 0 {
        // As the forwarder calls it (the whole datagram) and cut after the last record first.
        let whole = removeOPT(bytes, r), cut = removeOPT(canonical, r)
        fuzzCheck(whole == cut, "removeAdditional depends on the bytes after the last record; \(ctx())")
        canonical = cut
        fuzzCheck(canonical.count == r.optStart, "removeAdditional length \(canonical.count); \(ctx())")
        let c = parseResponse(canonical)
        fuzzCheck(c.error == nil, "answer no longer parses once its OPT is removed: \(c.error.map { "\($0)" } ?? ""); \(ctx())")
        fuzzCheck(c.optStart < 0 && c.questionEnd == r.questionEnd && c.answerCount == r.answerCount && c.end == canonical.count,
                  "removing the OPT changed the answer; \(ctx())")
        if r.optEnd == r.end {
            fuzzCheck(c.minTTL == r.minTTL && c.negativeTTL == r.negativeTTL, "removing the last OPT changed TTLs; \(ctx())")
        }
        let after = checkNames(canonical, c, ctx).map(\.name)
        let before = owners.filter { $0.start < r.optStart }.map(\.name)
        fuzzCheck(after == before, "owner names changed when the OPT was removed: \(before) -> \(after); \(ctx())")
    }
    let cr = parseResponse(canonical)
    fuzzCheck(cr.error == nil && cr.end == canonical.count, "canonical answer; \(ctx())")
    // A name may legally be compressed into the bytes of an earlier record's TTL; ageing
    // then changes the name too. Such answers are only checked for memory safety below.
    let aliased = namesOverlapTTLs(canonical, cr)

    // TTL ageing and override (cache hit, serve-stale), then the client's OPT.
    let elapsed = UInt32(truncatingIfNeeded: size &* 2654435761) % 200_000
    for override in [nil, UInt32(30)] as [UInt32?] {
        let aged: [UInt8] = withExactBuffer(canonical, extra: ResponseWriter.optSize) { p, count in
            ResponseParser.ageTTLs(p, count: count, questionEnd: cr.questionEnd, elapsed: elapsed, override: override)
            let n = ResponseWriter.appendOPT(p, at: count, udpSize: 1232, dnssecOK: true)
            return Array(UnsafeRawBufferPointer(start: p, count: n))
        }
        // The cache's fast path: TTL offsets recorded at insert, aged without a walk.
        let offsets: [Int]? = withExactBuffer(canonical) { p, count in
            let out = UnsafeMutablePointer<UInt16>.allocate(capacity: 32)
            defer { out.deallocate() }
            let n = ResponseParser.ttlOffsets(p, count: count, questionEnd: cr.questionEnd, into: out, max: 32)
            return n < 0 ? nil : (0..<n).map { Int(out[$0]) }
        }
        if let offsets, !aliased {
            var fast = canonical
            for at in offsets {
                fuzzCheck(at + 4 <= fast.count, "TTL offset \(at) out of range; \(ctx())")
                let ttl = UInt32(u16(fast, at)) << 16 | UInt32(u16(fast, at + 2))
                let v = override ?? (ttl > elapsed ? ttl - elapsed : 0)
                fast[at] = UInt8(v >> 24); fast[at + 1] = UInt8(truncatingIfNeeded: v >> 16)
                fast[at + 2] = UInt8(truncatingIfNeeded: v >> 8); fast[at + 3] = UInt8(truncatingIfNeeded: v)
            }
            fast[10] = aged[10]; fast[11] = aged[11]     // ARCOUNT, which appendOPT raised
            fuzzCheck(fast == Array(aged[..<canonical.count]), "ttlOffsets ageing differs from ageTTLs; \(ctx())")
        } else if offsets == nil {
            fuzzCheck(Int(u16(canonical, 6)) + Int(u16(canonical, 8)) + Int(u16(canonical, 10)) > 32,
                      "ttlOffsets refused an answer that walks cleanly; \(ctx())")
        }
        fuzzCheck(Array(aged[Header.size..<r.questionEnd]) == Array(canonical[Header.size..<r.questionEnd]), "question changed by ageing; \(ctx())")
        if aliased { continue }
        let a = parseResponse(aged)
        fuzzCheck(a.error == nil && a.optStart == canonical.count && a.answerCount == cr.answerCount,
                  "aged answer with OPT does not parse: \(a.error.map { "\($0)" } ?? ""); \(ctx())")
        if let o = override {
            fuzzCheck(cr.minTTL == nil || a.minTTL == o, "override: minTTL \(String(describing: a.minTTL)); \(ctx())")
        } else if let m = cr.minTTL, !hasTopBitTTL(canonical, cr) {
            // (A TTL with the top bit set counts as 0 in parse but is aged as a large number:
            // reported, not asserted here.)
            fuzzCheck(a.minTTL == (m > elapsed ? m - elapsed : 0), "ageing: \(m) - \(elapsed) gave \(String(describing: a.minTTL)); \(ctx())")
        }
        var agedBody = Array(aged[..<canonical.count])
        agedBody[10] = canonical[10]; agedBody[11] = canonical[11]
        let agedOwners = checkNames(agedBody, cr, ctx).map(\.name)
        fuzzCheck(agedOwners == checkNames(canonical, cr, ctx).map(\.name), "ageing changed owner names; \(ctx())")
    }
    let truncated: [UInt8] = withExactBuffer(canonical) { p, count in
        let n = ResponseWriter.truncate(p, questionEnd: cr.questionEnd)
        return Array(UnsafeRawBufferPointer(start: p, count: n))
    }
    let t = parseResponse(truncated)
    fuzzCheck(t.error == nil && t.truncated && t.answerCount == 0 && t.minTTL == nil, "truncated answer; \(ctx())")
    return 0
}

/// Walks every record's owner name with `skip` and `expand` (folded and not), checking that
/// they agree; returns the expanded owner names with the offsets of their records.
func checkNames(_ m: [UInt8], _ r: ResponseInfo, _ ctx: () -> String) -> [(start: Int, name: [UInt8])] {
    let total = Int(u16(m, 6)) + Int(u16(m, 8)) + Int(u16(m, 10))
    return withExactBuffer(m) { p, count -> [(start: Int, name: [UInt8])] in
        let out = UnsafeMutableRawPointer.allocate(byteCount: DNSName.maxLength, alignment: 1)
        let folded = UnsafeMutableRawPointer.allocate(byteCount: DNSName.maxLength, alignment: 1)
        defer { out.deallocate(); folded.deallocate() }
        var names: [(start: Int, name: [UInt8])] = []
        var c = WireCursor(p, count: count, offset: r.questionEnd)
        for _ in 0..<total {
            let start = c.offset
            var e = c, f = c
            DNSName.skip(&c)
            let n = DNSName.expand(&e, into: out, fold: false)
            let nf = DNSName.expand(&f, into: folded, fold: true)
            fuzzCheck(c.ok && e.ok && f.ok, "owner name of an accepted answer fails to expand; \(ctx())")
            fuzzCheck(c.offset == e.offset && e.offset == f.offset && n == nf && n <= DNSName.maxLength,
                      "skip and expand disagree; \(ctx())")
            let name = Array(UnsafeRawBufferPointer(start: out, count: n))
            fuzzCheck(name.map(DNSName.lower) == Array(UnsafeRawBufferPointer(start: folded, count: nf)), "folding; \(ctx())")
            names.append((start, name))
            c.skip(8)
            c.skip(Int(c.u16()))
        }
        fuzzCheck(c.ok, "record walk; \(ctx())")
        return names
    }
}

/// Whether any record's TTL has the top bit set (RFC 2181 8: read as zero).
func hasTopBitTTL(_ m: [UInt8], _ r: ResponseInfo) -> Bool {
    let total = Int(u16(m, 6)) + Int(u16(m, 8)) + Int(u16(m, 10))
    return withExactBuffer(m) { p, count -> Bool in
        var c = WireCursor(p, count: count, offset: r.questionEnd)
        for _ in 0..<total {
            DNSName.skip(&c)
            c.skip(4)
            if c.u32() > 0x7fff_ffff { return true }
            c.skip(Int(c.u16()))
        }
        return false
    }
}

func removeOPT(_ m: [UInt8], _ r: ResponseInfo) -> [UInt8] {
    withExactBuffer(m) { p, count in
        let n = ResponseParser.removeAdditional(p, count: count, start: r.optStart, end: r.optEnd)
        fuzzCheck(n >= Header.size && n <= count, "removeAdditional returned \(n) for \(count) bytes")
        return Array(UnsafeRawBufferPointer(start: p, count: n))
    }
}

/// Whether any owner name reads bytes of a record's TTL field (compression into an
/// earlier record's fixed fields). Only called for messages `parse` accepted.
func namesOverlapTTLs(_ m: [UInt8], _ r: ResponseInfo) -> Bool {
    let total = Int(u16(m, 6)) + Int(u16(m, 8)) + Int(u16(m, 10))
    var ttl = [Bool](repeating: false, count: m.count)
    var owners: [Int] = []
    var at = r.questionEnd
    for _ in 0..<total {
        owners.append(at)
        var pos = at
        while m[pos] != 0 && m[pos] & 0xC0 == 0 { pos += Int(m[pos]) + 1 }
        pos += m[pos] == 0 ? 1 : 2
        for k in (pos + 4)..<(pos + 8) { ttl[k] = true }
        at = pos + 10 + Int(u16(m, pos + 8))
    }
    for o in owners {
        var pos = o
        while true {
            let len = Int(m[pos])
            if len == 0 { if ttl[pos] { return true }; break }
            if len & 0xC0 == 0xC0 {
                if ttl[pos] || ttl[pos + 1] { return true }
                pos = Int(u16(m, pos) & 0x3FFF)
                continue
            }
            for k in pos...(pos + len) where ttl[k] { return true }
            pos += len + 1
        }
    }
    return false
}
