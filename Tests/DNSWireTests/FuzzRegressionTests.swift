import Foundation
import XCTest
import DNSWire

/// Every seed of Seeds/ (the FuzzQuery/FuzzResponse corpus and every past fuzzer finding,
/// named crash-*.bin) through the rewrites the forwarder applies to an upstream answer it
/// accepted, with the invariants FuzzResponse checks: removing the OPT, ageing the TTLs and
/// appending the client's OPT each leave a message that parses, with the same question and
/// owner names. SeedReplayTests covers the parsers themselves.
final class FuzzRegressionTests: XCTestCase {
    func seeds() throws -> [(String, [UInt8])] {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Seeds")
        return try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".bin") }.sorted()
            .map { ($0, [UInt8](try Data(contentsOf: dir.appendingPathComponent($0)))) }
    }

    func owners(_ m: [UInt8], _ r: ResponseInfo) -> [[UInt8]] {
        let total = Int(m[6]) << 8 | Int(m[7]) + (Int(m[8]) << 8 | Int(m[9])) + (Int(m[10]) << 8 | Int(m[11]))
        return m.withUnsafeBytes { raw -> [[UInt8]] in
            var out: [[UInt8]] = []
            var name = [UInt8](repeating: 0, count: 255)
            var c = WireCursor(raw.baseAddress!, count: raw.count, offset: r.questionEnd)
            for _ in 0..<total {
                let n = name.withUnsafeMutableBytes { DNSName.expand(&c, into: $0.baseAddress!, fold: false) }
                XCTAssertNil(c.error)
                out.append(Array(name[..<n]))
                c.skip(8)
                c.skip(Int(c.u16()))
            }
            return out
        }
    }

    /// The TTL fields `ttlOffsets` reports for `m`, read as numbers.
    func ttls(_ m: [UInt8], at offsets: [Int]) -> [UInt32] {
        offsets.map { UInt32(m[$0]) << 24 | UInt32(m[$0 + 1]) << 16 | UInt32(m[$0 + 2]) << 8 | UInt32(m[$0 + 3]) }
    }

    func ttlOffsets(_ m: [UInt8], questionEnd: Int) -> [Int]? {
        var out = [UInt16](repeating: 0, count: 64)
        let n = m.withUnsafeBytes { raw in
            out.withUnsafeMutableBufferPointer {
                ResponseParser.ttlOffsets(raw.baseAddress!, count: raw.count, questionEnd: questionEnd, into: $0.baseAddress!, max: 64)
            }
        }
        return n < 0 ? nil : out[..<n].map(Int.init)
    }

    func age(_ m: [UInt8], count: Int? = nil, questionEnd: Int, elapsed: UInt32, override: UInt32? = nil) -> [UInt8] {
        var m = m
        m.withUnsafeMutableBytes {
            ResponseParser.ageTTLs($0.baseAddress!, count: count ?? $0.count, questionEnd: questionEnd, elapsed: elapsed, override: override)
        }
        return m
    }

    func testRewritesKeepAcceptedAnswersValid() throws {
        var checked: [String] = []
        for (f, bytes) in try seeds() {
            let r = Msg.parseResponse(bytes)
            guard r.error == nil else { continue }
            checked.append(f)
            var m = Array(bytes[..<r.end])
            let before = owners(m, r)
            if r.optStart >= 0 {
                let n = m.withUnsafeMutableBytes {
                    ResponseParser.removeAdditional($0.baseAddress!, count: $0.count, start: r.optStart, end: r.optEnd)
                }
                XCTAssertEqual(n, r.optStart, f)
                m = Array(m[..<n])
            }
            let c = Msg.parseResponse(m)
            XCTAssertNil(c.error, f)
            XCTAssertEqual(c.optStart, -1, f)
            XCTAssertEqual(c.end, m.count, f)
            XCTAssertEqual(c.answerCount, r.answerCount, f)
            let after = owners(m, c)
            XCTAssertEqual(after, Array(before.prefix(after.count)), f)
            // The cache's fast path: one offset per record (no OPT is left), each a TTL field.
            let total = Int(m[6]) << 8 | Int(m[7]) + (Int(m[8]) << 8 | Int(m[9])) + (Int(m[10]) << 8 | Int(m[11]))
            let offsets = try XCTUnwrap(ttlOffsets(m, questionEnd: c.questionEnd), f)
            XCTAssertEqual(offsets.count, total, f)
            let original = ttls(m, at: offsets)
            for override in [nil, UInt32(30)] as [UInt32?] {
                var aged = m + [UInt8](repeating: 0, count: ResponseWriter.optSize)
                let n = aged.withUnsafeMutableBytes { raw -> Int in
                    ResponseParser.ageTTLs(raw.baseAddress!, count: m.count, questionEnd: c.questionEnd, elapsed: 7, override: override)
                    return ResponseWriter.appendOPT(raw.baseAddress!, at: m.count, udpSize: 1232, dnssecOK: false)
                }
                XCTAssertEqual(n, m.count + ResponseWriter.optSize, f)
                aged = Array(aged[..<n])
                // Every TTL, as the stored offsets see it: aged exactly, or overridden.
                XCTAssertEqual(ttls(aged, at: offsets), original.map { override ?? ($0 > 7 ? $0 - 7 : 0) }, f)
                let a = Msg.parseResponse(aged)
                XCTAssertNil(a.error, f)
                XCTAssertEqual(a.optStart, m.count, f)
                XCTAssertEqual(a.answerCount, c.answerCount, f)
                if let o = override { XCTAssertEqual(a.minTTL, c.minTTL == nil ? nil : o, f) }
            }
        }
        // Not vacuous: the accepted answers among the seeds, past findings included.
        for f in ["response-compressed.bin", "response-nxdomain-soa.bin", "crash-response-trailing-bytes.bin",
                  "crash-response-opt-type-in-answer.bin"] {
            XCTAssertTrue(checked.contains(f), "\(f) is no longer an accepted answer")
        }
    }

    /// Fuzzer findings, each pinned to what it now does.
    func testFindings() throws {
        let s = Dictionary(uniqueKeysWithValues: try seeds())
        // A name compressed into the header, whose bytes change per client (ID, counts).
        XCTAssertEqual(Msg.parseResponse(s["crash-response-pointer-into-header.bin"]!).error, .pointerIntoHeader)
        // After a jump, a label that runs past the pointer (into its own record and beyond).
        XCTAssertEqual(Msg.parseResponse(s["crash-response-label-past-pointer.bin"]!).error, .forwardPointer)
        // Bytes after the last record: parsed, and `end` says where the message stops.
        let trailing = s["crash-response-trailing-bytes.bin"]!
        let t = Msg.parseResponse(trailing)
        XCTAssertNil(t.error)
        XCTAssertLessThan(t.end, trailing.count)
        try checkTypeOPTInAnswer(s["crash-response-opt-type-in-answer.bin"]!)
    }

    /// crash-response-opt-type-in-answer.bin: www.example.test A; answer: a CNAME (TTL 300)
    /// and a type-41 record (TTL 0); additional: one record of type 0 (TTL 0), not an OPT;
    /// then 45 bytes that are no record. Found when `ageTTLs` skipped type 41 in every
    /// section while `parse` counted the answer's type-41 TTL in `minTTL`.
    ///
    /// RFC 6891 6.1.1: the OPT pseudo-RR is placed in the additional section, and only there
    /// do CLASS and TTL mean payload size, extended RCODE and flags; that record is never
    /// aged. A type-41 record in the answer or authority section is no OPT: `parse`,
    /// `ageTTLs` and `ttlOffsets` all treat it as an ordinary record with a TTL.
    func checkTypeOPTInAnswer(_ seed: [UInt8]) throws {
        let r = Msg.parseResponse(seed)
        XCTAssertNil(r.error)
        XCTAssertEqual(r.answerCount, 2)
        XCTAssertEqual(r.optStart, -1, "the additional record has type 0: no OPT")
        XCTAssertEqual(r.minTTL, 0, "the answer's type-41 TTL counts")
        XCTAssertEqual(r.end, 71)
        XCTAssertLessThan(r.end, seed.count)
        let m = Array(seed[..<r.end])
        // TTL fields: CNAME at 40, type 41 (answer) at 54, type 0 (additional) at 65.
        XCTAssertEqual(Array(m[50..<52]), [0, 41])
        XCTAssertEqual(ttlOffsets(m, questionEnd: r.questionEnd), [40, 54, 65])
        XCTAssertEqual(ttlOffsets(seed, questionEnd: r.questionEnd), [40, 54, 65], "bytes after the last record are not walked")
        XCTAssertEqual(ttls(m, at: [40, 54, 65]), [300, 0, 0])

        let overridden = age(m, questionEnd: r.questionEnd, elapsed: 0, override: 30)
        XCTAssertEqual(ttls(overridden, at: [40, 54, 65]), [30, 30, 30])
        XCTAssertEqual(Msg.parseResponse(overridden).minTTL, 30)
        // As the forwarder calls it on the whole datagram: the garbage after `end` is left alone.
        let whole = age(seed, count: r.end, questionEnd: r.questionEnd, elapsed: 0, override: 30)
        XCTAssertEqual(Array(whole[..<r.end]), overridden)
        XCTAssertEqual(Array(whole[r.end...]), Array(seed[r.end...]))
        let aged = age(m, questionEnd: r.questionEnd, elapsed: 7)
        XCTAssertEqual(ttls(aged, at: [40, 54, 65]), [293, 0, 0])

        // The same answer with a real OPT as its additional record (extended RCODE high
        // bits 1, DO): its TTL field is RCODE and flags, skipped by the walk and the offsets.
        var o = m
        o.replaceSubrange(61..<69, with: [0, 41, 0x04, 0xd0, 0x01, 0x00, 0x80, 0x00])
        let ro = Msg.parseResponse(o)
        XCTAssertNil(ro.error)
        XCTAssertEqual(ro.optStart, 60)
        XCTAssertEqual(ro.optEnd, 71)
        XCTAssertEqual(ro.extendedRCodeHigh, 1)
        XCTAssertEqual(ro.minTTL, 0, "the answer's type-41 record still counts; the OPT does not")
        XCTAssertEqual(ttlOffsets(o, questionEnd: ro.questionEnd), [40, 54], "both answer records, not the additional OPT")
        for (elapsed, override) in [(UInt32(0), UInt32(30) as UInt32?), (7, nil), (400, nil)] {
            let a = age(o, questionEnd: ro.questionEnd, elapsed: elapsed, override: override)
            XCTAssertEqual(Array(a[65..<69]), [0x01, 0x00, 0x80, 0x00], "OPT TTL (RCODE and flags) never aged")
            XCTAssertEqual(ttls(a, at: [40, 54]), [override ?? (300 > elapsed ? 300 - elapsed : 0), override ?? 0])
            let pa = Msg.parseResponse(a)
            XCTAssertNil(pa.error)
            XCTAssertEqual(pa.extendedRCodeHigh, 1)
            XCTAssertEqual(pa.minTTL, override ?? 0)
        }
        // With the OPT in the additional section and one more additional record after it
        // (ARCOUNT 2): the type-0 record after the OPT is aged; the OPT is not.
        var two = o + [0, 0, 0, 0, 0, 0, 0, 0x0e, 0x10, 0, 0]
        two[11] = 2
        let rt = Msg.parseResponse(two)
        XCTAssertNil(rt.error)
        XCTAssertEqual(rt.optStart, 60)
        XCTAssertEqual(ttlOffsets(two, questionEnd: rt.questionEnd), [40, 54, 76])
        let at = age(two, questionEnd: rt.questionEnd, elapsed: 100)
        XCTAssertEqual(ttls(at, at: [40, 54, 65, 76]), [200, 0, 0x0100_8000, 3500])
    }

    /// An OPT that is not the last record: everything after it goes with it, so no
    /// compression pointer into the moved bytes can end up pointing elsewhere.
    func testRecordsAfterTheOPTAreCutWithIt() {
        // NS answer; additional: OPT, then A and AAAA glue whose owner points at the A's.
        var m: [UInt8] = [0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 3]
        m += Msg.name("ns.example.test") + [0, 2, 0, 1]
        m += [0xc0, 12, 0, 2, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 1, 0x61, 0xc0, 12]
        let opt = m.count
        m += [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]
        let glue = m.count
        m += [1, 0x61, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 53]
        m += [0xc0, UInt8(glue), 0, 28, 0, 1, 0, 0, 0x0e, 0x10, 0, 16] + [UInt8](repeating: 0, count: 16)
        let r = Msg.parseResponse(m)
        XCTAssertNil(r.error)
        XCTAssertEqual(r.optStart, opt)
        let n = m.withUnsafeMutableBytes {
            ResponseParser.removeAdditional($0.baseAddress!, count: $0.count, start: r.optStart, end: r.optEnd)
        }
        XCTAssertEqual(n, opt)
        let c = Msg.parseResponse(Array(m[..<n]))
        XCTAssertNil(c.error)
        XCTAssertEqual(Array(m[10..<12]), [0, 0], "ARCOUNT: the records before the OPT")
        XCTAssertEqual(c.answerCount, 1)
    }
}
