import DNSWire
import CFuzz
#if canImport(Glibc)
import Glibc
#endif

/// An invariant of a harness. On failure prints the message and aborts, which libFuzzer
/// reports as a crash and saves the input as an artifact.
@inline(__always)
public func fuzzCheck(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
                      file: StaticString = #fileID, line: UInt = #line) {
    if !condition() {
        let text = "FUZZ INVARIANT FAILED at \(file):\(line): \(message())\n"
        text.withCString { _ = fputs($0, stderr) }
        abort()
    }
}

public func hexString<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
    let digits: [Character] = Array("0123456789abcdef")
    var s = ""
    s.reserveCapacity(bytes.count * 2)
    for b in bytes { s.append(digits[Int(b >> 4)]); s.append(digits[Int(b & 15)]) }
    return s
}

/// Consumes a fuzz input piece by piece (like LLVM's FuzzedDataProvider): fixed-size
/// values from the front, zero once the input is used up, so any input is a valid program.
public struct FuzzInput {
    public let bytes: UnsafeRawBufferPointer
    public var position = 0

    public init(_ data: UnsafePointer<UInt8>?, _ size: Int) {
        bytes = UnsafeRawBufferPointer(start: size > 0 ? UnsafeRawPointer(data) : nil, count: size)
    }

    public var remaining: Int { bytes.count - position }
    public var isEmpty: Bool { position >= bytes.count }

    public mutating func u8() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    public mutating func u16() -> UInt16 { UInt16(u8()) << 8 | UInt16(u8()) }
    public mutating func u32() -> UInt32 { UInt32(u16()) << 16 | UInt32(u16()) }
    public mutating func bool() -> Bool { u8() & 1 != 0 }

    /// A value in 0..<n (n > 0).
    public mutating func below(_ n: Int) -> Int { Int(u16()) % n }

    /// Up to `n` bytes (fewer at the end of the input).
    public mutating func take(_ n: Int) -> [UInt8] {
        let k = max(0, min(n, remaining))
        defer { position += k }
        return k == 0 ? [] : Array(bytes[position..<(position + k)])
    }

    /// A length-prefixed (u16) chunk.
    public mutating func chunk(max limit: Int = 65_535) -> [UInt8] { take(min(Int(u16()), limit)) }

    public mutating func rest() -> [UInt8] { take(remaining) }
}

/// Runs `body` with a heap copy of `bytes` of exactly their size, so AddressSanitizer
/// reports any read or write past the end (an Array's storage may have spare capacity).
public func withExactBuffer<T>(_ bytes: [UInt8], extra: Int = 0, _ body: (UnsafeMutableRawPointer, Int) -> T) -> T {
    let n = bytes.count + extra
    let p = UnsafeMutableRawPointer.allocate(byteCount: max(n, 1), alignment: 1)
    defer { p.deallocate() }
    if !bytes.isEmpty { bytes.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) } }
    if extra > 0 { (p + bytes.count).initializeMemory(as: UInt8.self, repeating: 0xAA, count: extra) }
    return body(p, bytes.count)
}

public func parseQuery(_ m: [UInt8]) -> QueryInfo {
    withExactBuffer(m) { QueryParser.parse($0, count: $1) }
}

public func parseResponse(_ m: [UInt8]) -> ResponseInfo {
    withExactBuffer(m) { ResponseParser.parse($0, count: $1) }
}

@inline(__always)
public func u16(_ m: [UInt8], _ at: Int) -> UInt16 { UInt16(m[at]) << 8 | UInt16(m[at + 1]) }

/// What every answer kubebridge sends to a client must satisfy, given the query it answers
/// (as received) and its parse: QR set, the query's ID, and either its exact question bytes
/// in a message that `ResponseParser` accepts, or (for a query whose question could not be
/// read: FORMERR, NOTIMP) a header-only answer. Returns the parsed reply.
@discardableResult
public func checkReply(_ reply: [UInt8], to query: [UInt8], info q: QueryInfo, udpLimit: Int?,
                       context: @autoclosure () -> String) -> ResponseInfo {
    func ctx() -> String { "\(context()): reply \(hexString(reply)) to query \(hexString(query))" }
    fuzzCheck(reply.count >= Header.size, "reply shorter than a header; \(ctx())")
    fuzzCheck(u16(reply, 0) == q.id, "reply does not echo the query ID; \(ctx())")
    fuzzCheck(u16(reply, 2) & Header.qr != 0, "reply without QR; \(ctx())")
    if let limit = udpLimit { fuzzCheck(reply.count <= limit, "UDP reply of \(reply.count) bytes over the client's limit \(limit); \(ctx())") }
    let r = parseResponse(reply)
    if q.questionEnd == 0 {
        // Header-only error answer: no question to echo.
        let rcode = u16(reply, 2) & Header.rcodeMask
        fuzzCheck(u16(reply, 4) == 0 && u16(reply, 6) == 0 && u16(reply, 8) == 0, "header-only answer with records; \(ctx())")
        fuzzCheck(rcode == RCode.formErr.rawValue || rcode == RCode.notImp.rawValue || rcode == 0,
                  "header-only answer with rcode \(rcode); \(ctx())")
        fuzzCheck(reply.count == Header.size || reply.count == Header.size + ResponseWriter.optSize, "header-only answer size; \(ctx())")
        return r
    }
    fuzzCheck(r.error == nil, "reply does not parse: \(r.error.map { "\($0)" } ?? ""); \(ctx())")
    fuzzCheck(r.questionEnd == q.questionEnd, "reply question length differs; \(ctx())")
    fuzzCheck(reply[Header.size..<r.questionEnd] == query[Header.size..<q.questionEnd], "reply question bytes differ; \(ctx())")
    fuzzCheck(!q.hasEDNS || r.optStart >= 0, "EDNS query answered without OPT; \(ctx())")
    fuzzCheck(q.hasEDNS || r.optStart < 0, "OPT in the answer to a query without one; \(ctx())")
    return r
}

/// Hands the process to libFuzzer with `callback` as LLVMFuzzerTestOneInput. Called from
/// each harness's main.swift; takes libFuzzer's usual flags and corpus arguments.
public func runFuzzer(_ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Never {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, callback))
}
