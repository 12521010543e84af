import DNSWire
import FuzzSupport

/// The client query parser (`QueryParser.parse`) and the error answers built from its
/// verdict (`ResponseWriter.error`): every input is parsed in an exactly-sized buffer, the
/// verdict must be consistent with the bytes, and every answer the server would send for
/// it must echo the ID and question and parse as a response.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzQuery(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = size > 0 ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    let q = parseQuery(bytes)
    func ctx() -> String { "query \(hexString(bytes))" }
    if size < Header.size {
        fuzzCheck(q.verdict == .drop, "short message not dropped; \(ctx())")
        return 0
    }
    let flags = u16(bytes, 2)
    fuzzCheck(q.id == u16(bytes, 0) && q.flags == flags, "id/flags; \(ctx())")
    if flags & Header.qr != 0 { fuzzCheck(q.verdict == .drop, "response not dropped; \(ctx())"); return 0 }
    fuzzCheck(q.verdict != .drop, "query dropped; \(ctx())")
    if q.questionEnd > 0 {
        fuzzCheck(q.nameLength >= 1 && q.nameLength <= DNSName.maxLength, "name length \(q.nameLength); \(ctx())")
        fuzzCheck(q.questionEnd == Header.size + q.nameLength + 4 && q.questionEnd <= size, "questionEnd; \(ctx())")
        fuzzCheck(bytes[Header.size + q.nameLength - 1] == 0, "name does not end in the root label; \(ctx())")
        // The question name is uncompressed and has labelCount labels.
        var i = Header.size, labels = 0
        while bytes[i] != 0 { fuzzCheck(bytes[i] <= 63, "label length; \(ctx())"); labels += 1; i += Int(bytes[i]) + 1 }
        fuzzCheck(i == Header.size + q.nameLength - 1 && labels == q.labelCount, "label walk; \(ctx())")
    }
    if q.verdict == .query || q.verdict == .badVers || q.verdict == .refused {
        fuzzCheck(q.questionEnd > 0 && q.error == nil, "accepted query without a question; \(ctx())")
        fuzzCheck(q.udpSize >= 512, "udpSize; \(ctx())")
        fuzzCheck(q.hasEDNS || (q.udpSize == 512 && !q.dnssecOK), "EDNS facts without OPT; \(ctx())")
    }
    if q.verdict == .query {
        fuzzCheck(q.qtype != RRType.axfr && q.qtype != RRType.ixfr && q.ednsVersion == 0, "verdict query; \(ctx())")
    }
    if q.verdict == .formErr { fuzzCheck(q.error != nil, "FORMERR without a reason; \(ctx())") }

    // Every answer the server could send to it.
    let rcodes: [RCode]
    switch q.verdict {
    case .drop: rcodes = []
    case .formErr: rcodes = [.formErr]
    case .notImp: rcodes = [.notImp]
    case .badVers: rcodes = [.badVers]
    case .refused: rcodes = [.refused]
    case .query: rcodes = [.refused, .servFail]     // access denied, overload
    }
    let room = (q.questionEnd > 0 ? q.questionEnd : Header.size) + ResponseWriter.optSize
    for rcode in rcodes {
        let reply: [UInt8] = withExactBuffer(bytes) { qp, _ in
            let out = UnsafeMutableRawPointer.allocate(byteCount: room, alignment: 1)
            defer { out.deallocate() }
            let n = ResponseWriter.error(query: qp, info: q, rcode: rcode, into: out, maxUDPSize: 1232)
            fuzzCheck(n <= room, "error answer of \(n) bytes overflows \(room); \(ctx())")
            return Array(UnsafeRawBufferPointer(start: out, count: n))
        }
        let r = checkReply(reply, to: bytes, info: q, udpLimit: 512, context: "error \(rcode)")
        let full = (u16(reply, 2) & Header.rcodeMask) | UInt16(r.extendedRCodeHigh) << 4
        fuzzCheck(full == rcode.rawValue, "answer carries rcode \(full), not \(rcode.rawValue); \(ctx())")
        fuzzCheck(u16(reply, 2) & Header.opcodeMask == flags & Header.opcodeMask, "opcode not echoed; \(ctx())")
    }
    return 0
}
