import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Looks into a running process from outside (/proc) and adjusts the test process's own
/// limits; used by the cache, hostile-client and real-client tests.
extension E2E {
    /// VmRSS of `pid` in KiB, from /proc/PID/status.
    static func rssKiB(pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        }
        return nil
    }

    /// User + system CPU time of `pid` so far, in clock ticks (/proc/PID/stat fields 14 and 15).
    static func cpuTicks(pid: Int32) -> Int? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let u = Int(fields[11]), let s = Int(fields[12]) else { return nil }
        return u + s
    }

    /// Number of open file descriptors of `pid` (entries of /proc/PID/fd).
    static func openFileCount(pid: Int32) -> Int? {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd"))?.count
    }

    /// Raises the soft RLIMIT_NOFILE of this process to at least `wanted` (up to the hard
    /// limit, which root may raise too). Returns the soft limit now in force.
    @discardableResult
    static func raiseFileLimit(to wanted: Int) -> Int {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        if limit.rlim_cur >= rlim_t(wanted) { return Int(limit.rlim_cur) }
        if limit.rlim_max < rlim_t(wanted) && getuid() == 0 {
            var raised = rlimit(rlim_cur: rlim_t(wanted), rlim_max: rlim_t(wanted))
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { return wanted }
        }
        limit.rlim_cur = min(rlim_t(wanted), limit.rlim_max)
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        return Int(limit.rlim_cur)
    }

    /// Writes a kubebridge configuration file (`[dns]` keys, one `key = value` per line,
    /// values already in TOML syntax) into a fresh temp directory and returns its path.
    static func writeDNSConfig(_ lines: [String]) throws -> String {
        let dir = try makeTempDirectory("config")
        let url = dir.appendingPathComponent("kubebridge.toml")
        try (["[dns]"] + lines).joined(separator: "\n").appending("\n").write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }
}
