import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The real `kubebridge dns` binary, started in the foreground on a free loopback port.
final class KubebridgeProcess {
    /// The binary next to the test bundle (`.build/<triple>/<config>/kubebridge`);
    /// `KUBEBRIDGE_BIN` overrides it. On Linux the test bundle is a plain executable and
    /// `Bundle(for:).bundleURL` is already its directory, on macOS it is the `.xctest`
    /// bundle, so both the URL and its parent are tried.
    static func binaryURL() -> URL {
        if let override = ProcessInfo.processInfo.environment["KUBEBRIDGE_BIN"], !override.isEmpty {
            return URL(fileURLWithPath: override)
        }
        let bundleURL = Bundle(for: KubebridgeProcess.self).bundleURL
        var candidates = [bundleURL.deletingLastPathComponent().appendingPathComponent("kubebridge"),
                          bundleURL.appendingPathComponent("kubebridge")]
        if let executable = Bundle.main.executableURL {
            candidates.append(executable.deletingLastPathComponent().appendingPathComponent("kubebridge"))
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]
    }

    let host = "127.0.0.1"
    let port: UInt16
    /// The port of the `[::1]` listener when one was requested.
    let ipv6Port: UInt16?
    let arguments: [String]
    private let child: ChildProcess
    private let directory: URL

    var stderr: String { child.log }
    var isRunning: Bool { child.isRunning }
    var pid: Int32 { child.pid }

    /// Starts `kubebridge dns --listen 127.0.0.1:<free port> [--listen [::1]:<free port>] <arguments>`
    /// and waits (up to `readyTimeout`) for the `listening on` line on stderr.
    init(arguments: [String], ipv6: Bool = false, readyTimeout: TimeInterval = 10) throws {
        let binary = KubebridgeProcess.binaryURL()
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw E2EError("kubebridge binary not found next to the test bundle (\(binary.path)): "
                           + "run `swift build` first (or set KUBEBRIDGE_BIN to the binary)")
        }
        port = try E2E.freePort(host: host)
        ipv6Port = ipv6 ? try E2E.freePort(host: "::1") : nil
        var full = ["dns", "--listen", "\(host):\(port)"]
        if let ipv6Port { full += ["--listen", "[::1]:\(ipv6Port)"] }
        full += arguments
        self.arguments = full
        directory = try E2E.makeTempDirectory("kubebridge")
        child = try ChildProcess(name: "kubebridge", executable: binary.path, arguments: full,
                                 logURL: directory.appendingPathComponent("stderr.log"))
        let started = E2E.waitUntil(timeout: readyTimeout) { child.log.contains("listening on") || !child.isRunning }
        guard started, child.isRunning else {
            let exit = child.stop(grace: 1)
            throw E2EError("kubebridge did not print `listening on` within \(readyTimeout) s (\(exit))\n"
                           + "command: \(binary.path) \(full.joined(separator: " "))\nstderr:\n\(E2E.tail(child.log))")
        }
    }

    /// SIGTERM and wait; the caller asserts `isCleanExit`. Idempotent.
    @discardableResult
    func stop(signal: Int32 = SIGTERM) -> ChildProcess.Exit {
        stopRequested = true
        return child.stop(signal: signal, grace: 5)
    }

    /// Set once `stop` was called (by a test or by tearDown).
    private(set) var stopRequested = false

    func removeFiles() { try? FileManager.default.removeItem(at: directory) }

    deinit {
        child.stop(signal: SIGKILL, grace: 1)
        removeFiles()
    }
}
