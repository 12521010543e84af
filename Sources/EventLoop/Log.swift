import CLibevent
import DNSWire
import Forwarding
import Glibc
import NetAddress

/// One line per event a sysadmin cares about, on stderr (journald adds time and unit).
/// `fputs` of one whole line is atomic per call in glibc, so worker threads can log.
public enum Log {
    public enum Level: Int, Comparable, Sendable {
        case error = 0, warning, info, debug
        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }

        public init?(name: String) {
            switch name {
            case "error": self = .error
            case "warning", "warn": self = .warning
            case "info": self = .info
            case "debug": self = .debug
            default: return nil
            }
        }
    }

    nonisolated(unsafe) public static var level: Level = .info

    public static func error(_ s: @autoclosure () -> String) { write(.error, "error: " + s()) }
    public static func warning(_ s: @autoclosure () -> String) { write(.warning, "warning: " + s()) }
    public static func info(_ s: @autoclosure () -> String) { write(.info, s()) }
    public static func debug(_ s: @autoclosure () -> String) { write(.debug, s()) }

    static func write(_ l: Level, _ s: String) {
        guard l <= level else { return }
        fputs("kubebridge: \(s)\n", stderr)
    }
}

/// The optional query log: one line per answer on stdout,
/// `client name type rcode origin server latency`. Off by default; when off it costs the
/// one branch in `WorkerIO.reply`.
enum QueryLog {
    static let types: [UInt16: String] = [1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT",
                                          28: "AAAA", 33: "SRV", 65: "HTTPS", 255: "ANY"]
    static let rcodes = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"]

    static func line(client: String, answer: UnsafeRawPointer, count: Int, origin: AnswerOrigin) -> String {
        var name = "?"
        var type = "?"
        if count >= 12 && Header.count(answer, Header.qdcountOffset) == 1 {
            var c = WireCursor(answer, count: count, offset: Header.size)
            let (len, _) = DNSName.scanUncompressed(&c)
            let t = c.u16()
            if c.ok {
                name = DNSName.text(answer + Header.size, length: len)
                type = types[t] ?? "TYPE\(t)"
            }
        }
        let rc = Int(Header.flags(answer) & Header.rcodeMask)
        let rcode = rc < rcodes.count ? rcodes[rc] : "RCODE\(rc)"
        let from: String
        switch origin.kind {
        case .cache: from = "cache -"
        case .stale: from = "stale -"
        case .local: from = "local -"
        case .upstream: from = "upstream \(origin.server?.description ?? "-")"
        }
        return "\(client) \(name) \(type) \(rcode) \(from) \(origin.latencyMs)ms\n"
    }
}
