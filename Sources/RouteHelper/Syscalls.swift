#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CShim

/// A failed system call, with what the route helper was doing when it failed.
public struct SystemError: Error, Equatable, CustomStringConvertible {
    public let operation: String
    public let errno: Int32

    public var description: String {
        var text = "\(operation): \(String(cString: strerror(errno)))"
        if errno == EPERM || errno == EACCES {
            text += " (run as root or with CAP_NET_ADMIN)"
        }
        return text
    }
}

/// The outcome of a non-blocking call: EAGAIN is an ordinary answer ("nothing yet"), not an error.
enum IOResult<T> {
    case done(T)
    case wouldBlock
}

/// Every system call the route helper makes, each wrapped once: EINTR is retried here and
/// nowhere else, errors become `SystemError`, and nothing above this file touches errno.
enum Sys {
    // MARK: netlink sockets

    /// socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_ROUTE) bound to `groups`; returns the
    /// descriptor and the port id the kernel assigned (replies carry it in nlmsg_pid).
    static func openNetlinkSocket(groups: UInt32) throws(SystemError) -> (fd: Int32, portID: UInt32) {
        let fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NL.protocolRoute)
        guard fd >= 0 else { throw SystemError(operation: "open netlink socket", errno: errno) }
        var addr = kb_sockaddr_nl(nl_family: sa_family_t(AF_NETLINK), nl_pad: 0, nl_pid: 0, nl_groups: groups)
        let size = socklen_t(MemoryLayout<kb_sockaddr_nl>.size)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, size) }
        }
        guard rc == 0 else {
            let e = errno
            _ = Glibc.close(fd)
            throw SystemError(operation: "bind netlink socket", errno: e)
        }
        var bound = kb_sockaddr_nl()
        var len = size
        let rc2 = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard rc2 == 0 else {
            let e = errno
            _ = Glibc.close(fd)
            throw SystemError(operation: "getsockname on netlink socket", errno: e)
        }
        return (fd, bound.nl_pid)
    }

    /// setsockopt with an int value. Returns false (without throwing) for ENOPROTOOPT, so
    /// optional features such as extended acks degrade gracefully on old kernels.
    @discardableResult
    static func setIntOption(_ fd: Int32, level: Int32, name: Int32, value: Int32, what: String) throws(SystemError) -> Bool {
        var v = value
        let rc = setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
        if rc == 0 { return true }
        if errno == ENOPROTOOPT { return false }
        throw SystemError(operation: "setsockopt \(what)", errno: errno)
    }

    /// sendto(fd, bytes, kernel address). A netlink request is one datagram, sent whole or not at all.
    static func sendToKernel(_ fd: Int32, _ bytes: [UInt8]) throws(SystemError) -> IOResult<Int> {
        var addr = kb_sockaddr_nl(nl_family: sa_family_t(AF_NETLINK), nl_pad: 0, nl_pid: 0, nl_groups: 0)
        while true {
            let n = bytes.withUnsafeBytes { buf in
                withUnsafePointer(to: &addr) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, buf.baseAddress, buf.count, 0, $0, socklen_t(MemoryLayout<kb_sockaddr_nl>.size))
                    }
                }
            }
            if n >= 0 { return .done(n) }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return .wouldBlock }
            throw SystemError(operation: "send netlink request", errno: errno)
        }
    }

    /// recv(fd, MSG_DONTWAIT|MSG_TRUNC) into `buffer`. Returns the datagram's real length,
    /// which is larger than `buffer.count` when it did not fit (the caller must treat that as
    /// an error: a cut datagram cannot be parsed). ENOBUFS (the kernel dropped notifications
    /// because we were slow) is returned to the caller as a value via `overflowed`.
    static func receive(_ fd: Int32, into buffer: inout [UInt8]) throws(SystemError) -> IOResult<ReceiveResult> {
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT) | Int32(MSG_TRUNC)) }
            if n >= 0 { return .done(ReceiveResult(length: n, overflowed: false)) }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return .wouldBlock }
            if errno == ENOBUFS { return .done(ReceiveResult(length: 0, overflowed: true)) }
            throw SystemError(operation: "receive netlink reply", errno: errno)
        }
    }

    struct ReceiveResult {
        var length: Int
        var overflowed: Bool
    }

    /// poll(fd, POLLIN, timeout). True when readable; false on timeout. EINTR returns false
    /// too, so a signal (SIGTERM in --watch) wakes the caller up to look at its stop flag.
    static func waitReadable(_ fd: Int32, timeoutMilliseconds: Int32) throws(SystemError) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let rc = poll(&p, 1, timeoutMilliseconds)
        if rc > 0 { return true }
        if rc == 0 || errno == EINTR { return false }
        throw SystemError(operation: "poll netlink socket", errno: errno)
    }

    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    // MARK: interfaces

    static func interfaceIndex(_ name: String) -> UInt32? {
        let i = if_nametoindex(name)
        return i == 0 ? nil : i
    }

    static func interfaceName(_ index: UInt32) -> String? {
        var buf = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        guard if_indextoname(index, &buf) != nil else { return nil }
        return String(cString: buf)
    }

    // MARK: files (sysctls, the drop-in, the state file)

    /// The whole file, or nil when it does not exist. At most `limit` bytes are read: these
    /// are sysctls and small config files, and a huge one means something is wrong.
    static func readFile(_ path: String, limit: Int = 1 << 20) throws(SystemError) -> [UInt8]? {
        var fd: Int32
        repeat { fd = open(path, O_RDONLY | O_CLOEXEC) } while fd < 0 && errno == EINTR
        if fd < 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw SystemError(operation: "open \(path)", errno: errno)
        }
        defer { _ = Glibc.close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while out.count < limit {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError(operation: "read \(path)", errno: errno)
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }

    /// Writes into an existing file without creating or truncating it: how /proc/sys takes a value.
    static func writeExisting(_ path: String, _ bytes: [UInt8]) throws(SystemError) {
        var fd: Int32
        repeat { fd = open(path, O_WRONLY | O_CLOEXEC) } while fd < 0 && errno == EINTR
        guard fd >= 0 else { throw SystemError(operation: "open \(path) for writing", errno: errno) }
        defer { _ = Glibc.close(fd) }
        try writeAll(fd, bytes, path)
    }

    /// Replaces `path` atomically (temporary file, fsync, rename) so a crash never leaves a
    /// half-written drop-in or state file behind.
    static func writeFileAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws(SystemError) {
        let tmp = path + ".tmp-kubebridge"
        var fd: Int32
        repeat { fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode) } while fd < 0 && errno == EINTR
        guard fd >= 0 else { throw SystemError(operation: "create \(tmp)", errno: errno) }
        do throws(SystemError) {
            try writeAll(fd, bytes, tmp)
            if fsync(fd) != 0 { throw SystemError(operation: "fsync \(tmp)", errno: errno) }
        } catch {
            _ = Glibc.close(fd)
            _ = unlink(tmp)
            throw error
        }
        _ = Glibc.close(fd)
        guard rename(tmp, path) == 0 else {
            let e = errno
            _ = unlink(tmp)
            throw SystemError(operation: "rename \(tmp) to \(path)", errno: e)
        }
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], _ path: String) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError(operation: "write \(path)", errno: errno)
            }
            offset += n
        }
    }

    /// Removes a file; false when it was not there.
    @discardableResult
    static func removeFile(_ path: String) throws(SystemError) -> Bool {
        if unlink(path) == 0 { return true }
        if errno == ENOENT { return false }
        throw SystemError(operation: "remove \(path)", errno: errno)
    }

    /// mkdir -p.
    static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(SystemError) {
        var partial = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            partial += "/" + component
            if mkdir(partial, mode) != 0 && errno != EEXIST {
                throw SystemError(operation: "create directory \(partial)", errno: errno)
            }
        }
    }

    static func isExecutable(_ path: String) -> Bool {
        access(path, X_OK) == 0
    }

    /// Names in a directory (without . and ..); empty when it cannot be read.
    static func listDirectory(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
            if names.count > 4096 { break }
        }
        return names.sorted()
    }

    // MARK: time and signals

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static func sleep(milliseconds: Int) {
        var request = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }

    // MARK: child processes (read-only firewall probes)

    /// Runs `argv` (absolute path first) with stdin closed, captures stdout+stderr up to
    /// 256 KiB, and kills it after `timeoutSeconds`. Nil when it could not be started.
    /// Only used to read the firewall (`iptables -S`, `nft list ruleset`) for gateway checks;
    /// routes are never changed by running a program.
    static func runCapturing(_ argv: [String], timeoutSeconds: Double) -> (status: Int32, output: String)? {
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { return nil }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 2)
        posix_spawn_file_actions_addclose(&actions, pipeFDs[0])
        posix_spawn_file_actions_addclose(&actions, pipeFDs[1])
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) }
        cArgs.append(nil)
        defer { for p in cArgs { free(p) } }
        var env: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/sbin:/usr/bin:/sbin:/bin"), strdup("LC_ALL=C"), nil]
        defer { for p in env { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, cArgs, &env)
        _ = Glibc.close(pipeFDs[1])
        guard rc == 0 else {
            _ = Glibc.close(pipeFDs[0])
            return nil
        }
        let readFD = pipeFDs[0]
        defer { _ = Glibc.close(readFD) }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        let deadline = monotonicSeconds() + timeoutSeconds
        var killed = false
        readLoop: while true {
            let left = deadline - monotonicSeconds()
            if left <= 0 { kill(pid, SIGKILL); killed = true; break }
            var p = pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)
            let ready = poll(&p, 1, Int32(max(1, min(left, 1) * 1000)))
            if ready < 0 && errno != EINTR { break }
            if ready <= 0 { continue }
            let n = chunk.withUnsafeMutableBytes { read(readFD, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; break readLoop }
            if n == 0 { break }
            if output.count < 256 * 1024 { output.append(contentsOf: chunk[0..<n]) }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        if killed { return nil }
        let exitCode = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (exitCode, String(decoding: output, as: UTF8.self))
    }
}
