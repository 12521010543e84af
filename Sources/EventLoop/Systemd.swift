import CLibevent
import Glibc

/// systemd's notify protocol (sd_notify(3)) over `NOTIFY_SOCKET`, in a few lines instead of
/// linking libsystemd: one datagram per state change to a Unix socket (an `@` prefix means
/// the abstract namespace). Does nothing when not started by systemd.
public enum SystemdNotify {
    public static var enabled: Bool { getenv("NOTIFY_SOCKET") != nil }

    /// The watchdog interval systemd expects pings within (`WatchdogSec=`), if any.
    public static var watchdogMicroseconds: UInt64? {
        guard let v = getenv("WATCHDOG_USEC"), let n = UInt64(String(cString: v)), n > 0 else { return nil }
        if let pid = getenv("WATCHDOG_PID"), let p = Int32(String(cString: pid)), p != getpid() { return nil }
        return n
    }

    @discardableResult
    public static func send(_ state: String) -> Bool {
        guard let raw = getenv("NOTIFY_SOCKET") else { return false }
        var path = Array(String(cString: raw).utf8)
        guard !path.isEmpty, path.count < 108 else { return false }
        if path[0] == UInt8(ascii: "@") { path[0] = 0 }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in path.enumerated() { p[i] = b } }
        let len = socklen_t(MemoryLayout<sa_family_t>.size + path.count)
        let msg = Array(state.utf8)
        let n = withUnsafePointer(to: &addr) { a in
            a.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                // Never block: a receiver that stops reading would otherwise freeze the main
                // thread (a full Unix datagram queue blocks the sender) and with it SIGTERM.
                msg.withUnsafeBytes { sendto(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT), sa, len) }
            }
        }
        return n == msg.count
    }
}
