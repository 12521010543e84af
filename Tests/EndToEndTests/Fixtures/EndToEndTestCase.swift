// End-to-end tests: the built `kubebridge dns` binary against real DNS software.
//   Run:   swift build && swift test --filter EndToEndTests
//   Needs: knotd (apt: knot), kdig (knot-dnsutils), dig (bind9-dnsutils), python3,
//          setpriv (util-linux); root is not required by the fixtures.
// All traffic stays on loopback: kubebridge on 127.0.0.1 (and [::1]), the knotd
// stand-ins on 127.0.0.2-4, fakedns.py on 127.0.0.5-6. KUBEBRIDGE_BIN=/path overrides
// the binary that is otherwise taken from next to the test bundle.
import Foundation
import XCTest

/// The three knotd stand-ins shared by the tests of one class (started on first use,
/// stopped in the class's `tearDown`).
final class KnotStandIns {
    let kubeDNS: KnotServer     // 127.0.0.2: cluster.local + reverse zones
    let upstream: KnotServer    // 127.0.0.3: example.test, local, 10/172.in-addr.arpa
    let corp: KnotServer        // 127.0.0.4: corp.test (a --forward target)

    init() throws {
        kubeDNS = try KnotServer(name: "kube-dns", address: "127.0.0.2", zones: Zones.kubeDNS)
        do {
            upstream = try KnotServer(name: "upstream", address: "127.0.0.3", zones: Zones.upstream)
        } catch {
            kubeDNS.stop()
            throw error
        }
        do {
            corp = try KnotServer(name: "corp", address: "127.0.0.4", zones: Zones.corp)
        } catch {
            kubeDNS.stop(); upstream.stop()
            throw error
        }
    }

    var all: [KnotServer] { [kubeDNS, upstream, corp] }

    func stop() { all.forEach { $0.stop() } }

    /// The usual kubebridge flags pointing at these servers; `forwards` replaces the
    /// default `--forward corp.test=<corp>`.
    func clusterArguments(forwards: [String]? = nil) -> [String] {
        ["--cluster-zone", "cluster.local", "--cluster-dns", kubeDNS.endpoint,
         "--pod-cidr", "172.20.0.0/16", "--service-cidr", "172.21.0.0/16", "--service-cidr", "10.96.0.0/12",
         "--upstream", upstream.endpoint]
            + (forwards ?? ["corp.test=\(corp.endpoint)"]).flatMap { ["--forward", $0] }
    }
}

/// Base class: owns every helper process a test starts and stops them all in `tearDown`,
/// whether the test passed or not. kubebridge must exit 0 on SIGTERM.
class EndToEndTestCase: XCTestCase {
    private static var sharedKnots: [ObjectIdentifier: KnotStandIns] = [:]
    private var kubebridges: [KubebridgeProcess] = []
    private var fakes: [FakeDNS] = []

    /// The shared knotd stand-ins for this test class.
    func knots() throws -> KnotStandIns {
        let key = ObjectIdentifier(type(of: self))
        if let existing = EndToEndTestCase.sharedKnots[key] {
            if existing.all.allSatisfy(\.isRunning) { return existing }
            existing.stop()
            EndToEndTestCase.sharedKnots[key] = nil
            XCTFail("a knotd stand-in died between tests; restarting them")
        }
        let started = try KnotStandIns()
        EndToEndTestCase.sharedKnots[key] = started
        return started
    }

    override class func tearDown() {
        sharedKnots.removeValue(forKey: ObjectIdentifier(self))?.stop()
        super.tearDown()
    }

    /// Starts kubebridge with `arguments` (plus `--threads 1` unless given).
    @discardableResult
    func startKubebridge(_ arguments: [String], ipv6: Bool = false) throws -> KubebridgeProcess {
        var args = arguments
        if !args.contains("--threads") { args += ["--threads", "1"] }
        let process = try KubebridgeProcess(arguments: args, ipv6: ipv6)
        kubebridges.append(process)
        return process
    }

    /// kubebridge in front of the shared knot stand-ins.
    @discardableResult
    func startKubebridgeWithKnots(_ extra: [String] = [], forwards: [String]? = nil, ipv6: Bool = false) throws -> KubebridgeProcess {
        try startKubebridge(knots().clusterArguments(forwards: forwards) + extra, ipv6: ipv6)
    }

    /// kubebridge whose `--upstream` list is the given fakes (no knotd needed); the
    /// cluster DNS points at a port nobody listens on.
    @discardableResult
    func startKubebridge(upstreams: [FakeDNS], _ extra: [String] = []) throws -> KubebridgeProcess {
        try startKubebridge(["--cluster-dns", "127.0.0.9:9"] + upstreams.flatMap { ["--upstream", $0.endpoint] } + extra)
    }

    /// Short per-attempt and total upstream timeouts for the fault tests.
    static var shortTimeouts: [String] { timeouts(upstreamMs: 300, queryMs: 1200) }

    /// `--upstream-timeout MS --query-timeout MS`, plain milliseconds as the CLI contract
    /// specifies (KUBEBRIDGE_E2E_MS_SUFFIX=ms appends a unit, for servers that need one).
    static func timeouts(upstreamMs: Int, queryMs: Int) -> [String] {
        let unit = ProcessInfo.processInfo.environment["KUBEBRIDGE_E2E_MS_SUFFIX"] ?? ""
        return ["--upstream-timeout", "\(upstreamMs)\(unit)", "--query-timeout", "\(queryMs)\(unit)"]
    }

    func startFake(_ mode: FakeDNS.Mode, address: String = "127.0.0.5", port: UInt16 = 0, thenOK: Bool = false,
                   extra: [String] = []) throws -> FakeDNS {
        let fake = try FakeDNS(mode: mode, address: address, port: port, thenOK: thenOK, extraArguments: extra)
        fakes.append(fake)
        return fake
    }

    override func tearDown() {
        let failed = (testRun?.totalFailureCount ?? 0) > 0
        for process in kubebridges {
            if process.stopRequested {   // the test stopped it and checked the exit itself
                process.removeFiles()
                continue
            }
            let wasRunning = process.isRunning
            let exit = process.stop()
            if !wasRunning {
                XCTFail("kubebridge was no longer running at the end of the test (\(exit)); stderr:\n\(E2E.tail(process.stderr))")
            } else if !exit.isCleanExit {
                XCTFail("kubebridge should exit 0 on SIGTERM, got \(exit); stderr:\n\(E2E.tail(process.stderr))")
            } else if failed {
                print("---- kubebridge \(process.arguments.joined(separator: " ")) stderr:\n\(E2E.tail(process.stderr, lines: 60))")
            }
            process.removeFiles()
        }
        kubebridges = []
        for fake in fakes {
            if failed { print("---- fakedns \(fake.mode.rawValue) log:\n\(E2E.tail(fake.log))") }
            fake.stop()
        }
        fakes = []
        if failed, let knots = EndToEndTestCase.sharedKnots[ObjectIdentifier(type(of: self))] {
            for knot in knots.all where !knot.isRunning {
                print("---- knotd \(knot.name) is not running; log:\n\(E2E.tail(knot.log))")
            }
        }
        super.tearDown()
    }

    // MARK: - Query helpers against a kubebridge instance

    func dig(_ kb: KubebridgeProcess, _ name: String, _ type: String = "A", options: [String] = [],
             timeoutSeconds: Int = 5) throws -> DigResult {
        try Dig.query(name, type, server: kb.host, port: kb.port, options: options, timeoutSeconds: timeoutSeconds)
    }

    /// One raw UDP exchange; nil when nothing came back within `timeout`.
    func rawUDP(_ kb: KubebridgeProcess, _ packet: [UInt8], timeout: TimeInterval = 5) throws -> DNSResponse? {
        guard let bytes = try RawDNS.udp(packet, host: kb.host, port: kb.port, timeout: timeout) else { return nil }
        return try DNSResponse(bytes)
    }

    /// Asserts a dig result is NOERROR with exactly the given A/AAAA/PTR/TXT rdata set.
    func assertAnswer(_ result: DigResult, _ type: String, _ expected: [String],
                      file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(result.status, "NOERROR", "status, \(result)", file: file, line: line)
        XCTAssertEqual(result.rdata(type).sorted(), expected.sorted(), "answer, \(result)", file: file, line: line)
    }
}
