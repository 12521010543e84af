import DNSWire

/// Builds wire messages for tests with the project's own `MessageBuilder`.
enum Msg {
    static func name(_ s: String) -> [UInt8] { try! DNSName.wire(fromText: s) }

    static func build(id: UInt16 = 0x1234, flags: UInt16 = Header.rd, _ body: (inout MessageBuilder) -> Void) -> [UInt8] {
        var storage = [UInt8](repeating: 0, count: 4096)
        return storage.withUnsafeMutableBytes { raw -> [UInt8] in
            var b = MessageBuilder(buffer: raw.baseAddress!, capacity: raw.count, id: id, flags: flags)
            body(&b)
            return b.bytes
        }
    }

    static func query(_ n: String, type: UInt16 = RRType.a, id: UInt16 = 0x1234, flags: UInt16 = Header.rd,
                      edns: UInt16? = nil, dnssecOK: Bool = false) -> [UInt8] {
        build(id: id, flags: flags) { b in
            b.question(name(n), type: type)
            if let size = edns { b.opt(udpSize: size, dnssecOK: dnssecOK) }
        }
    }

    static func parseQuery(_ m: [UInt8]) -> QueryInfo {
        m.withUnsafeBytes { QueryParser.parse($0.baseAddress!, count: $0.count) }
    }

    static func parseResponse(_ m: [UInt8]) -> ResponseInfo {
        m.withUnsafeBytes { QueryParserBridge.response($0.baseAddress!, $0.count) }
    }
}

enum QueryParserBridge {
    static func response(_ p: UnsafeRawPointer, _ n: Int) -> ResponseInfo { ResponseParser.parse(p, count: n) }
}
