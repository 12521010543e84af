import FuzzSupport
import NetAddress
@testable import RouteHelper

/// Netlink replies as the route helper reads them: `NetlinkParser.messages` splits a
/// datagram, each message is decoded by type (`errorReply`, `doneCode`, `route`) and fed
/// to a `ReplyCollector` (dump and single-request mode). Every length read from the input
/// is checked against the bytes present: a decode either succeeds with values that fit
/// their fields or throws `NetlinkParseError`; it never traps.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNetlink(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = size > 0 ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    let messages: [NetlinkMessage]
    do { messages = try NetlinkParser.messages(in: bytes) } catch { return 0 }
    var consumed = 0
    for m in messages {
        let length = Int(m.header.length)
        fuzzCheck(length >= 16 && m.payload.count == length - 16, "message length \(length), payload \(m.payload.count)")
        fuzzCheck(m.payload.startIndex >= consumed + 16 && m.payload.endIndex <= size, "payload outside the datagram")
        consumed = m.payload.endIndex
        switch m.header.type {
        case NL.MessageType.error:
            if let e = try? NetlinkParser.errorReply(m) {
                fuzzCheck(e.errno >= 0 && e.errno < 4096, "errno \(e.errno)")
            }
        case NL.MessageType.done:
            let code = NetlinkParser.doneCode(m)
            fuzzCheck(code >= 0 && code < 4096, "done code \(code)")
        default:
            if let r = try? NetlinkParser.route(m) {
                fuzzCheck(r.destination.prefix >= 0 && r.destination.prefix <= r.destination.address.bitWidth, "prefix")
                fuzzCheck(r.destination.address == r.destination.address.masked(r.destination.prefix), "host bits")
                fuzzCheck(r.gateway.map { $0.family == r.family } ?? true, "gateway family")
                fuzzCheck(r.preferredSource.map { $0.family == r.family } ?? true, "prefsrc family")
                _ = "\(r.destination) \(r.gateway.map { "\($0)" } ?? "-")"
            }
        }
    }
    if let first = messages.first {
        for dump in [false, true] {
            var c = ReplyCollector(sequence: first.header.sequence, portID: first.header.portID, isDump: dump)
            for m in messages {
                guard let outcome = try? c.consume(m), outcome == .needMore else { break }
            }
        }
    }
    return 0
}
