import NetAddress

/// What is wrong with bytes that claim to be netlink messages. The parser never trusts a
/// length it read: every one is checked against the bytes actually present.
public enum NetlinkParseError: Error, Equatable, CustomStringConvertible {
    case truncated(what: String, needed: Int, available: Int)
    case badLength(what: String, length: Int)
    case badAttribute(what: String, type: UInt16, length: Int)

    public var description: String {
        switch self {
        case let .truncated(what, needed, available):
            return "malformed netlink reply: \(what) needs \(needed) bytes, \(available) left"
        case let .badLength(what, length):
            return "malformed netlink reply: \(what) has impossible length \(length)"
        case let .badAttribute(what, type, length):
            return "malformed netlink reply: \(what) attribute \(type) has length \(length)"
        }
    }
}

/// A bounded reader over a byte range. Reads past the end return zero and record the
/// first error; later errors never overwrite it, so the caller reports the real cause.
struct ByteCursor {
    private let bytes: ArraySlice<UInt8>
    private(set) var position: Int
    let end: Int
    private(set) var error: NetlinkParseError?

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        position = bytes.startIndex
        end = bytes.endIndex
    }

    var remaining: Int { end - position }
    var isAtEnd: Bool { position >= end }

    private mutating func need(_ n: Int, _ what: String) -> Bool {
        if error != nil { return false }
        if n < 0 || n > remaining {
            error = .truncated(what: what, needed: n, available: remaining)
            return false
        }
        return true
    }

    mutating func fail(_ e: NetlinkParseError) {
        if error == nil { error = e }
    }

    mutating func u8(_ what: String) -> UInt8 {
        guard need(1, what) else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func u16(_ what: String) -> UInt16 {
        guard need(2, what) else { return 0 }
        var v: UInt16 = 0
        withUnsafeMutableBytes(of: &v) { raw in for i in 0..<2 { raw[i] = bytes[position + i] } }
        position += 2
        return v
    }

    mutating func u32(_ what: String) -> UInt32 {
        guard need(4, what) else { return 0 }
        var v: UInt32 = 0
        withUnsafeMutableBytes(of: &v) { raw in for i in 0..<4 { raw[i] = bytes[position + i] } }
        position += 4
        return v
    }

    mutating func i32(_ what: String) -> Int32 { Int32(bitPattern: u32(what)) }

    mutating func take(_ n: Int, _ what: String) -> ArraySlice<UInt8> {
        guard need(n, what) else { return [] }
        defer { position += n }
        return bytes[position..<(position + n)]
    }

    /// Skips alignment padding; the last item of a buffer may legitimately lack it.
    mutating func skipPadding(after length: Int) {
        let pad = (NL.alignment - length % NL.alignment) % NL.alignment
        position = min(end, position + pad)
    }
}

struct NetlinkHeader: Equatable, Sendable {
    var length: UInt32
    var type: UInt16
    var flags: UInt16
    var sequence: UInt32
    var portID: UInt32
}

struct NetlinkMessage: Equatable, Sendable {
    var header: NetlinkHeader
    var payload: ArraySlice<UInt8>
}

/// The kernel's answer to a request: an ACK is an error message with code 0.
struct NetlinkErrorReply: Equatable, Sendable {
    /// 0 for an ACK, otherwise a positive errno.
    var errno: Int32
    /// The request the kernel is answering (its header, even when the body was capped).
    var request: NetlinkHeader
    /// The extended-ack text (`NLMSGERR_ATTR_MSG`), e.g. "Nexthop has invalid gateway".
    var message: String?
}

/// Pure decoding of netlink datagrams. No I/O, no global state: fuzz targets and the seed
/// replay test call these directly.
enum NetlinkParser {
    /// Splits one received datagram into messages.
    static func messages(in datagram: ArraySlice<UInt8>) throws(NetlinkParseError) -> [NetlinkMessage] {
        var c = ByteCursor(datagram)
        var out: [NetlinkMessage] = []
        while !c.isAtEnd {
            let start = c.position
            let header = NetlinkHeader(length: c.u32("nlmsghdr"), type: c.u16("nlmsghdr"), flags: c.u16("nlmsghdr"),
                                       sequence: c.u32("nlmsghdr"), portID: c.u32("nlmsghdr"))
            if let e = c.error { throw e }
            let length = Int(header.length)
            guard length >= NL.headerSize, length - NL.headerSize <= c.remaining else {
                throw .badLength(what: "message at offset \(start - datagram.startIndex)", length: length)
            }
            let payload = c.take(length - NL.headerSize, "message payload")
            if let e = c.error { throw e }
            out.append(NetlinkMessage(header: header, payload: payload))
            c.skipPadding(after: length)
        }
        return out
    }

    static func messages(in datagram: [UInt8]) throws(NetlinkParseError) -> [NetlinkMessage] {
        try messages(in: datagram[...])
    }

    /// Walks `rtattr`s, calling `visit` with each type and payload. Stops at the first
    /// malformed attribute and throws it.
    static func attributes(_ bytes: ArraySlice<UInt8>, in what: String,
                           _ visit: (UInt16, ArraySlice<UInt8>) throws(NetlinkParseError) -> Void) throws(NetlinkParseError) {
        var c = ByteCursor(bytes)
        while !c.isAtEnd {
            let length = Int(c.u16("\(what) attribute header"))
            let type = c.u16("\(what) attribute header") & 0x3fff // strip NLA_F_NESTED / NLA_F_NET_BYTEORDER
            if let e = c.error { throw e }
            guard length >= 4, length - 4 <= c.remaining else {
                throw .badAttribute(what: what, type: type, length: length)
            }
            let payload = c.take(length - 4, "\(what) attribute")
            if let e = c.error { throw e }
            try visit(type, payload)
            c.skipPadding(after: length)
        }
    }

    /// Decodes `NLMSG_ERROR` (an error, or an ACK when the code is 0).
    static func errorReply(_ m: NetlinkMessage) throws(NetlinkParseError) -> NetlinkErrorReply {
        var c = ByteCursor(m.payload)
        let code = c.i32("nlmsgerr.error")
        let echoed = NetlinkHeader(length: c.u32("nlmsgerr.msg"), type: c.u16("nlmsgerr.msg"), flags: c.u16("nlmsgerr.msg"),
                                   sequence: c.u32("nlmsgerr.msg"), portID: c.u32("nlmsgerr.msg"))
        if let e = c.error { throw e }
        guard code <= 0, code > -4096 else { throw .badLength(what: "error code", length: Int(code)) }
        var message: String?
        if m.header.flags & NL.Flag.ackTLVs != 0 {
            if m.header.flags & NL.Flag.capped == 0 {
                // The whole request is echoed before the attributes.
                let body = Int(echoed.length) - NL.headerSize
                guard body >= 0 else { throw .badLength(what: "echoed request", length: Int(echoed.length)) }
                _ = c.take(body, "echoed request")
                c.skipPadding(after: Int(echoed.length))
                if let e = c.error { throw e }
            }
            let rest = c.take(c.remaining, "extended ack")
            try attributes(rest, in: "extended ack") { (type, payload) throws(NetlinkParseError) in
                if type == NL.ErrorAttribute.message {
                    let text = payload.prefix { $0 != 0 }
                    message = String(decoding: text, as: UTF8.self)
                }
            }
        }
        return NetlinkErrorReply(errno: -code, request: echoed, message: message)
    }

    /// The error code carried by `NLMSG_DONE` (non-zero when a dump failed part-way).
    static func doneCode(_ m: NetlinkMessage) -> Int32 {
        var c = ByteCursor(m.payload)
        let code = c.i32("done")
        if c.error != nil || code == 0 { return 0 }
        // An errno is small and negative; anything else is garbage, reported as EPROTO.
        return code < 0 && code > -4096 ? -code : 71
    }

    /// Decodes an `RTM_NEWROUTE`/`RTM_DELROUTE` message. Returns nil for families the route
    /// helper does not manage (MPLS, multicast dumps), which are skipped rather than errors.
    static func route(_ m: NetlinkMessage) throws(NetlinkParseError) -> KernelRoute? {
        var c = ByteCursor(m.payload)
        let family = c.u8("rtmsg")
        let dstLength = Int(c.u8("rtmsg"))
        let srcLength = c.u8("rtmsg")
        let tos = c.u8("rtmsg")
        let table8 = c.u8("rtmsg")
        let proto = c.u8("rtmsg")
        let scope = c.u8("rtmsg")
        let type = c.u8("rtmsg")
        _ = c.u32("rtmsg")
        if let e = c.error { throw e }
        let addressSize: Int
        switch family {
        case AddressFamilyNumber.inet: addressSize = 4
        case AddressFamilyNumber.inet6: addressSize = 16
        default: return nil
        }
        guard dstLength <= addressSize * 8 else { throw .badLength(what: "rtm_dst_len", length: dstLength) }

        var destination: IPAddress?
        var gateway: IPAddress?
        var prefsrc: IPAddress?
        var table = UInt32(table8)
        var oif: UInt32?
        var priority: UInt32?
        var multipath = false

        func address(_ p: ArraySlice<UInt8>, _ t: UInt16) throws(NetlinkParseError) -> IPAddress {
            guard p.count == addressSize, let a = p.withUnsafeBytes({ IPAddress(bytes: $0) }) else {
                throw .badAttribute(what: "route", type: t, length: p.count + 4)
            }
            return a
        }
        func u32(_ p: ArraySlice<UInt8>, _ t: UInt16) throws(NetlinkParseError) -> UInt32 {
            guard p.count == 4 else { throw .badAttribute(what: "route", type: t, length: p.count + 4) }
            var c = ByteCursor(p)
            return c.u32("u32 attribute")
        }

        try attributes(c.take(c.remaining, "route attributes"), in: "route") { (t, p) throws(NetlinkParseError) in
            switch t {
            case RTA.dst: destination = try address(p, t)
            case RTA.gateway: gateway = try address(p, t)
            case RTA.prefsrc: prefsrc = try address(p, t)
            case RTA.table: table = try u32(p, t)
            case RTA.oif: oif = try u32(p, t)
            case RTA.priority: priority = try u32(p, t)
            case RTA.multipath: multipath = true
            default: break
            }
        }
        let zero = family == AddressFamilyNumber.inet ? IPAddress(v4: 0) : IPAddress(v6High: 0, low: 0)
        return KernelRoute(destination: CIDR(address: destination ?? zero, prefix: dstLength), table: table,
                           protocolID: proto, scope: scope, type: type, gateway: gateway, outputInterface: oif,
                           priority: priority, preferredSource: prefsrc, isMultipath: multipath,
                           tos: tos, sourceLength: srcLength)
    }
}
