import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Paths and small utilities shared by the end-to-end fixtures.
enum E2E {
    /// The `Fixtures` directory in the source tree (fixtures are located via `#filePath`,
    /// so the test target needs no SwiftPM resources).
    static let fixturesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()

    static var fakeDNSScript: URL { fixturesDirectory.appendingPathComponent("fakedns.py") }

    /// Finds an executable in PATH or the usual sbin directories.
    static func tool(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let dirs = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        for dir in dirs {
            let candidate = dir + "/" + name
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    static func requireTool(_ name: String, package: String) throws -> String {
        guard let path = tool(name) else {
            throw E2EError("`\(name)` not found in PATH; install the Debian package `\(package)` (apt-get install \(package))")
        }
        return path
    }

    /// System python3 first: a pyenv shim costs ~100 ms per start.
    static func python() throws -> String {
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") { return "/usr/bin/python3" }
        return try requireTool("python3", package: "python3")
    }

    static func makeTempDirectory(_ prefix: String) throws -> URL {
        let base = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("kubebridge-e2e-\(prefix)-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        return base
    }

    /// A port that is currently free for both UDP and TCP on `host`. Chosen below the
    /// Linux ephemeral range so it cannot collide with the random source ports the
    /// server under test picks for its upstream queries.
    static func freePort(host: String) throws -> UInt16 {
        for _ in 0..<200 {
            let port = UInt16.random(in: 20000...32000)
            if canBind(host: host, port: port, type: udpSocketType), canBind(host: host, port: port, type: tcpSocketType) {
                return port
            }
        }
        throw E2EError("no free UDP+TCP port on \(host)")
    }

    private static func canBind(host: String, port: UInt16, type: Int32) -> Bool {
        guard let address = try? SocketAddress(host: host, port: port) else { return false }
        let fd = socket(address.family, type, 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return address.withSockaddr { bind(fd, $0, $1) } == 0
    }

    /// Polls `condition` every `interval` until it holds or `timeout` elapses.
    @discardableResult
    static func waitUntil(timeout: TimeInterval, interval: TimeInterval = 0.02, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            Thread.sleep(forTimeInterval: interval)
        }
        return condition()
    }

    static let udpSocketType = Int32(SOCK_DGRAM.rawValue)
    static let tcpSocketType = Int32(SOCK_STREAM.rawValue)

    static func tail(_ text: String, lines: Int = 40) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }
}

struct E2EError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A helper process (knotd, fakedns.py, kubebridge, dig) with its output in a log file.
/// Long-running children get PR_SET_PDEATHSIG=KILL via setpriv, so even a crashed test
/// process leaves no knotd/python/kubebridge behind.
final class ChildProcess {
    let name: String
    let process = Process()
    let logURL: URL
    private let logHandle: FileHandle

    init(name: String, executable: String, arguments: [String], logURL: URL, dieWithParent: Bool = true) throws {
        self.name = name
        self.logURL = logURL
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        logHandle = try FileHandle(forWritingTo: logURL)
        if dieWithParent, let setpriv = E2E.tool("setpriv") {
            process.executableURL = URL(fileURLWithPath: setpriv)
            process.arguments = ["--pdeathsig", "KILL", "--", executable] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = logHandle
        process.standardError = logHandle
        do {
            try process.run()
        } catch {
            try? logHandle.close()
            throw E2EError("cannot start \(name) (\(executable)): \(error)")
        }
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    var log: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }
    var commandLine: String { ([process.executableURL?.path ?? ""] + (process.arguments ?? [])).joined(separator: " ") }

    struct Exit: CustomStringConvertible {
        var signaled: Bool
        var status: Int32
        var killedAfterTimeout: Bool
        var description: String {
            (killedAfterTimeout ? "did not exit in time, killed; " : "") + (signaled ? "killed by signal \(status)" : "exit status \(status)")
        }
        var isCleanExit: Bool { !signaled && status == 0 && !killedAfterTimeout }
    }

    /// Waits up to `timeout` for the process to exit on its own.
    func waitForExit(timeout: TimeInterval) -> Exit? {
        guard E2E.waitUntil(timeout: timeout, interval: 0.01, { !process.isRunning }) else { return nil }
        return exitInfo(killed: false)
    }

    /// Sends `signal`, waits up to `grace`, then SIGKILLs. Idempotent.
    @discardableResult
    func stop(signal: Int32 = SIGTERM, grace: TimeInterval = 5) -> Exit {
        if process.isRunning {
            kill(pid, signal)
            if waitForExit(timeout: grace) == nil {
                kill(pid, SIGKILL)
                process.waitUntilExit()
                try? logHandle.close()
                return exitInfo(killed: true)
            }
        }
        process.waitUntilExit()
        try? logHandle.close()
        return exitInfo(killed: false)
    }

    private func exitInfo(killed: Bool) -> Exit {
        Exit(signaled: process.terminationReason == .uncaughtSignal, status: process.terminationStatus, killedAfterTimeout: killed)
    }
}

extension E2E {
    /// The outcome of `runCommand`.
    struct CommandResult {
        var exitStatus: Int32
        var output: String
        var elapsed: TimeInterval
    }

    /// Runs a short-lived command (dig, kdig) to completion, bounded by `timeout`.
    static func runCommand(_ executable: String, _ arguments: [String], timeout: TimeInterval = 15) throws -> CommandResult {
        let dir = URL(fileURLWithPath: NSTemporaryDirectory())
        let logURL = dir.appendingPathComponent("kubebridge-e2e-cmd-\(getpid())-\(UUID().uuidString.prefix(8)).log")
        defer { try? FileManager.default.removeItem(at: logURL) }
        let start = Date()
        let child = try ChildProcess(name: (executable as NSString).lastPathComponent, executable: executable,
                                     arguments: arguments, logURL: logURL, dieWithParent: false)
        let exit = child.waitForExit(timeout: timeout) ?? child.stop(signal: SIGKILL, grace: 1)
        let elapsed = Date().timeIntervalSince(start)
        let output = child.log
        if exit.killedAfterTimeout || exit.signaled {
            throw E2EError("`\(child.commandLine)` did not finish within \(timeout) s (\(exit)); output:\n\(output)")
        }
        return CommandResult(exitStatus: exit.status, output: output, elapsed: elapsed)
    }
}
