import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Minimal DNS wire helpers for the raw tests: a query builder and a response parser.
/// Deliberately independent of the server's DNSWire module.
enum DNSType {
    static let a: UInt16 = 1, ns: UInt16 = 2, soa: UInt16 = 6, ptr: UInt16 = 12, txt: UInt16 = 16
    static let aaaa: UInt16 = 28, opt: UInt16 = 41
}

enum DNSRcode {
    static let noError = 0, formErr = 1, servFail = 2, nxDomain = 3, notImp = 4, refused = 5, badVers = 16
}

struct QueryBuilder {
    var id: UInt16 = 0x4B42
    var qr = false
    var opcode: UInt8 = 0
    var rd = true
    var ad = false
    var cd = false
    var qdcount: UInt16?          // nil: the number of questions actually written
    var questions: [(name: String, type: UInt16)] = []
    /// EDNS OPT: nil for none.
    var edns: (udpSize: UInt16, version: UInt8, dnssecOK: Bool)?

    init(id: UInt16 = 0x4B42, name: String? = nil, type: UInt16 = DNSType.a) {
        self.id = id
        if let name { questions = [(name, type)] }
    }

    /// The header: 12 bytes.
    func header(ancount: UInt16 = 0) -> [UInt8] {
        var flags: UInt16 = 0
        if qr { flags |= 0x8000 }
        flags |= UInt16(opcode & 0x0F) << 11
        if rd { flags |= 0x0100 }
        if ad { flags |= 0x0020 }
        if cd { flags |= 0x0010 }
        let qd = qdcount ?? UInt16(questions.count)
        let ar: UInt16 = edns == nil ? 0 : 1
        return be16(id) + be16(flags) + be16(qd) + be16(ancount) + be16(0) + be16(ar)
    }

    var bytes: [UInt8] {
        var out = header()
        for q in questions { out += QueryBuilder.encodeName(q.name) + be16(q.type) + be16(1) }
        if let edns {
            out += [0] + be16(DNSType.opt) + be16(edns.udpSize) + [0, edns.version] + be16(edns.dnssecOK ? 0x8000 : 0) + be16(0)
        }
        return out
    }

    /// Wire form of a presentation name, preserving case ("WEB.Prod." -> 3WEB4Prod0).
    static func encodeName(_ name: String) -> [UInt8] {
        var out: [UInt8] = []
        for label in name.split(separator: ".", omittingEmptySubsequences: true) {
            let bytes = Array(label.utf8)
            out.append(UInt8(bytes.count))
            out += bytes
        }
        return out + [0]
    }
}

func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }

struct DNSRecord: CustomStringConvertible {
    var name: String
    var type: UInt16
    var klass: UInt16
    var ttl: UInt32
    var rdata: [UInt8]
    /// A/AAAA as an address, PTR as a name, TXT as the joined strings; hex otherwise.
    var rdataText: String

    var description: String { "\(name) \(ttl) type\(type) \(rdataText)" }
}

struct DNSResponse: CustomStringConvertible {
    let raw: [UInt8]
    let id: UInt16
    let flags: UInt16
    let qdcount: Int, ancount: Int, nscount: Int, arcount: Int
    /// Wire bytes of the first question (name + type + class), exactly as received.
    var questionBytes: [UInt8] = []
    var questionName: String?
    var questionType: UInt16?
    var answers: [DNSRecord] = []
    var authority: [DNSRecord] = []
    var additional: [DNSRecord] = []
    /// The OPT pseudo-record, if any.
    var opt: (udpSize: UInt16, extendedRcodeHigh: UInt8, version: UInt8, dnssecOK: Bool)?

    var qr: Bool { flags & 0x8000 != 0 }
    var opcode: Int { Int(flags >> 11) & 0x0F }
    var aa: Bool { flags & 0x0400 != 0 }
    var tc: Bool { flags & 0x0200 != 0 }
    var rd: Bool { flags & 0x0100 != 0 }
    var ra: Bool { flags & 0x0080 != 0 }
    var ad: Bool { flags & 0x0020 != 0 }
    var cd: Bool { flags & 0x0010 != 0 }
    var rcode: Int { Int(flags & 0x000F) | Int(opt?.extendedRcodeHigh ?? 0) << 4 }

    var addresses: [String] { answers.filter { $0.type == DNSType.a || $0.type == DNSType.aaaa }.map(\.rdataText) }

    var description: String {
        var flagNames: [String] = []
        for (set, name) in [(qr, "qr"), (aa, "aa"), (tc, "tc"), (rd, "rd"), (ra, "ra"), (ad, "ad"), (cd, "cd")] where set {
            flagNames.append(name)
        }
        return "id=\(id) opcode=\(opcode) rcode=\(rcode) flags=[\(flagNames.joined(separator: " "))] q=\(questionName ?? "-") "
            + "an=\(answers) ns=\(authority.count) ar=\(additional.count) opt=\(opt.map { "size \($0.udpSize) v\($0.version)" } ?? "none")"
    }

    /// Parses a response; throws on malformed data (which is itself a test failure).
    init(_ raw: [UInt8]) throws {
        do {
            try self.init(parsing: raw)
        } catch {
            throw E2EError("malformed DNS response (\(error)): \(raw.count) bytes: "
                           + raw.prefix(128).map { String(format: "%02x", $0) }.joined())
        }
    }

    private init(parsing raw: [UInt8]) throws {
        self.raw = raw
        guard raw.count >= 12 else { throw E2EError("response shorter than a header: \(raw.count) bytes") }
        id = UInt16(raw[0]) << 8 | UInt16(raw[1])
        flags = UInt16(raw[2]) << 8 | UInt16(raw[3])
        func count(_ i: Int) -> Int { Int(raw[i]) << 8 | Int(raw[i + 1]) }
        qdcount = count(4); ancount = count(6); nscount = count(8); arcount = count(10)
        var offset = 12
        for index in 0..<qdcount {
            let start = offset
            let name = try DNSResponse.readName(raw, &offset)
            guard offset + 4 <= raw.count else { throw E2EError("question truncated") }
            let type = UInt16(raw[offset]) << 8 | UInt16(raw[offset + 1])
            offset += 4
            if index == 0 {
                questionBytes = Array(raw[start..<offset])
                questionName = name
                questionType = type
            }
        }
        answers = try DNSResponse.readRecords(raw, &offset, ancount)
        authority = try DNSResponse.readRecords(raw, &offset, nscount)
        additional = try DNSResponse.readRecords(raw, &offset, arcount)
        if let o = additional.first(where: { $0.type == DNSType.opt }) {
            opt = (o.klass, UInt8(o.ttl >> 24), UInt8((o.ttl >> 16) & 0xFF), o.ttl & 0x8000 != 0)
        }
    }

    /// Reads a possibly compressed name, keeping the case of every label.
    static func readName(_ raw: [UInt8], _ offset: inout Int) throws -> String {
        var labels: [String] = []
        var position = offset
        var jumped = false
        var jumps = 0
        while true {
            guard position < raw.count else { throw E2EError("name runs past the end") }
            let length = Int(raw[position])
            if length & 0xC0 == 0xC0 {
                guard position + 1 < raw.count, jumps < 64 else { throw E2EError("bad compression pointer") }
                if !jumped { offset = position + 2 }
                position = (length & 0x3F) << 8 | Int(raw[position + 1])
                jumped = true
                jumps += 1
                continue
            }
            guard length & 0xC0 == 0 else { throw E2EError("bad label type") }
            if length == 0 {
                if !jumped { offset = position + 1 }
                return labels.isEmpty ? "." : labels.joined(separator: ".") + "."
            }
            guard position + 1 + length <= raw.count else { throw E2EError("label runs past the end") }
            labels.append(String(decoding: raw[(position + 1)...(position + length)], as: UTF8.self))
            position += 1 + length
        }
    }

    static func readRecords(_ raw: [UInt8], _ offset: inout Int, _ count: Int) throws -> [DNSRecord] {
        var records: [DNSRecord] = []
        for _ in 0..<count {
            let name = try readName(raw, &offset)
            guard offset + 10 <= raw.count else { throw E2EError("record header truncated") }
            let type = UInt16(raw[offset]) << 8 | UInt16(raw[offset + 1])
            let klass = UInt16(raw[offset + 2]) << 8 | UInt16(raw[offset + 3])
            let ttl = raw[(offset + 4)...(offset + 7)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            let length = Int(raw[offset + 8]) << 8 | Int(raw[offset + 9])
            offset += 10
            guard offset + length <= raw.count else { throw E2EError("rdata truncated") }
            let rdata = Array(raw[offset..<(offset + length)])
            var text = rdata.map { String(format: "%02x", $0) }.joined()
            switch type {
            case DNSType.a where length == 4:
                text = rdata.map(String.init).joined(separator: ".")
            case DNSType.aaaa where length == 16:
                var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
                rdata.withUnsafeBytes { _ = inet_ntop(AF_INET6, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
                text = String(cString: buffer)
            case DNSType.ptr:
                var o = offset
                text = (try? readName(raw, &o)) ?? text
            case DNSType.txt:
                var parts: [String] = []
                var i = 0
                while i < rdata.count {
                    let n = Int(rdata[i])
                    parts.append(String(decoding: rdata[min(i + 1, rdata.count)..<min(i + 1 + n, rdata.count)], as: UTF8.self))
                    i += 1 + n
                }
                text = parts.joined()
            default:
                break
            }
            offset += length
            records.append(DNSRecord(name: name, type: type, klass: klass, ttl: ttl, rdata: rdata, rdataText: text))
        }
        return records
    }
}
