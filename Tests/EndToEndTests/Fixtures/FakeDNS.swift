import Foundation

/// Runs `fakedns.py`, a scripted UDP+TCP upstream used for faults and query counting.
final class FakeDNS {
    enum Mode: String {
        case ok, ad, silent, servfail, refused, tc, nxdomain
        case wrongID = "wrong-id", wrongPort = "wrong-port", wrongAddress = "wrong-address", wrongQuestion = "wrong-question"
        case tcAlways = "tc-always", tcpCut = "tcp-cut", tcpGarbled = "tcp-garbled"
    }

    /// The address every spoofed reply carries; it must never reach a client.
    static let spoofedAddress = "6.6.6.6"

    struct Query: Decodable {
        var transport: String
        var id: Int
        var sport: Int
        var qname: String
        var qtype: Int
        var time: Double
    }

    struct State: Decodable {
        var port: Int
        var udp: Int
        var tcp: Int
        var queries: [Query]
        /// Queries per lower-case name with the trailing dot ("www.example.test.").
        var counts: [String: Int]?
        var total: Int { udp + tcp }
        func count(_ name: String) -> Int { counts?[name.lowercased()] ?? 0 }
    }

    let mode: Mode
    let address: String
    private(set) var port: UInt16 = 0
    private let directory: URL
    private let stateURL: URL
    private let child: ChildProcess

    var endpoint: String { address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)" }
    var log: String { child.log }

    /// `extraArguments`: fakedns.py options such as `--ttl 1`, `--aaaa`, `--delay 500`,
    /// `--soa-ttl 60 --soa-minimum 3`, `--counts-only` (see the script's docstring).
    init(mode: Mode, address: String = "127.0.0.5", port: UInt16 = 0, thenOK: Bool = false,
         extraArguments: [String] = []) throws {
        self.mode = mode
        self.address = address
        directory = try E2E.makeTempDirectory("fakedns-\(mode.rawValue)")
        stateURL = directory.appendingPathComponent("state.json")
        var arguments = [E2E.fakeDNSScript.path, "--mode", mode.rawValue, "--listen", address, "--port", String(port),
                         "--state", stateURL.path]
        if thenOK { arguments.append("--then-ok") }
        arguments += extraArguments
        child = try ChildProcess(name: "fakedns-\(mode.rawValue)", executable: try E2E.python(), arguments: arguments,
                                 logURL: directory.appendingPathComponent("fakedns.log"))
        let ready = E2E.waitUntil(timeout: 10) { child.log.contains("ready on") || !child.isRunning }
        guard ready, child.isRunning, let state = try? readState() else {
            stop()
            throw E2EError("fakedns.py (\(mode.rawValue)) did not start within 10 s:\n\(E2E.tail(child.log))")
        }
        self.port = UInt16(state.port)
    }

    deinit { stop() }

    func readState() throws -> State {
        let data = try Data(contentsOf: stateURL)
        return try JSONDecoder().decode(State.self, from: data)
    }

    /// The counts, waiting briefly for in-flight queries to be recorded.
    func state(settle: TimeInterval = 0.1) throws -> State {
        Thread.sleep(forTimeInterval: settle)
        return try readState()
    }

    func stop() {
        child.stop(grace: 2)
        try? FileManager.default.removeItem(at: directory)
    }
}
