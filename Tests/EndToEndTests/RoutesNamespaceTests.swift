import Foundation
import XCTest

/// `kubebridge routes` against real kernels: every test builds its own network namespaces
/// (`ip netns add kbtest-…`), runs the built `kubebridge` binary inside them with
/// `ip netns exec`, and deletes them in tearDown, even after a failure. /proc/sys/net is per
/// namespace, so forwarding flips there never reach the host; the host's own forwarding and
/// kubebridge routes are read before and after each test to prove it.
final class RoutesNamespaceTests: XCTestCase {
    private var namespaces: [String] = []
    private var background: [Process] = []
    private var scratch = URL(fileURLWithPath: "/")
    private var hostForwardBefore = ""
    private var hostOwnedBefore = ""
    private let tag = String(UInt32.random(in: 0..<UInt32.max), radix: 16)

    private static let ipTool = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) }
    private static let python = ["/usr/bin/python3", "/usr/local/bin/python3"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// The built product sits beside the test bundle (on Linux, Bundle(for:) may already
    /// name the build directory itself rather than the .xctest inside it).
    private var binary: String {
        let bundle = Bundle(for: RoutesNamespaceTests.self).bundleURL
        let candidates = [bundle.deletingLastPathComponent().appendingPathComponent("kubebridge"),
                          bundle.appendingPathComponent("kubebridge")]
        return (candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]).path
    }

    override func setUpWithError() throws {
        guard getuid() == 0 else {
            throw XCTSkip("RoutesNamespaceTests need root to create network namespaces (ip netns add); skipped")
        }
        guard Self.ipTool != nil else { throw XCTSkip("iproute2's `ip` is not installed; skipped") }
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw NSError(domain: "RoutesNamespaceTests", code: 1, userInfo: [
                NSLocalizedDescriptionKey: "kubebridge binary not found next to the test bundle (\(binary)); build the package first"])
        }
        let probe = "kbtest-\(tag)-probe"
        guard run([Self.ipTool!, "netns", "add", probe]).status == 0 else {
            throw XCTSkip("network namespaces are not available here (ip netns add failed); skipped")
        }
        _ = run([Self.ipTool!, "netns", "del", probe])
        scratch = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("kbtest-\(tag)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        hostForwardBefore = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_forward", encoding: .utf8)) ?? ""
        hostOwnedBefore = run([Self.ipTool!, "route", "show", "table", "all", "proto", "201"]).out
    }

    override func tearDown() {
        for p in background where p.isRunning {
            p.terminate()
        }
        for p in background { waitOrKill(p, seconds: 5) }
        background = []
        for ns in namespaces.reversed() { _ = run([Self.ipTool!, "netns", "del", ns]) }
        namespaces = []
        try? FileManager.default.removeItem(at: scratch)
        if Self.ipTool != nil && getuid() == 0 {
            XCTAssertEqual((try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_forward", encoding: .utf8)) ?? "", hostForwardBefore,
                           "the host's ip_forward changed")
            XCTAssertEqual(run([Self.ipTool!, "route", "show", "table", "all", "proto", "201"]).out, hostOwnedBefore,
                           "the host's routing table changed")
        }
    }

    // MARK: helpers

    private struct Result {
        var status: Int32
        var out: String
        var err: String
    }

    /// Runs a command with a deadline; output goes through files so a chatty child cannot block.
    private func run(_ argv: [String], timeout: Double = 20) -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        let outURL = FileManager.default.temporaryDirectory.appendingPathComponent("kbtest-\(UUID().uuidString).out")
        let errURL = outURL.appendingPathExtension("err")
        FileManager.default.createFile(atPath: outURL.path, contents: nil)
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: outURL)
            try? FileManager.default.removeItem(at: errURL)
        }
        guard let outH = try? FileHandle(forWritingTo: outURL), let errH = try? FileHandle(forWritingTo: errURL) else {
            return Result(status: -1, out: "", err: "cannot create output files")
        }
        p.standardOutput = outH
        p.standardError = errH
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { return Result(status: -1, out: "", err: "\(error)") }
        waitOrKill(p, seconds: timeout)
        try? outH.close()
        try? errH.close()
        let out = (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
        return Result(status: p.isRunning ? -9 : p.terminationStatus, out: out, err: err)
    }

    private func waitOrKill(_ p: Process, seconds: Double) {
        let deadline = Date().addingTimeInterval(seconds)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            let hard = Date().addingTimeInterval(2)
            while p.isRunning && Date() < hard { usleep(20_000) }
        }
    }

    private func makeNamespace(_ role: String) -> String {
        let name = "kbtest-\(tag)-\(role)"
        XCTAssertEqual(run([Self.ipTool!, "netns", "add", name]).status, 0, "ip netns add \(name)")
        namespaces.append(name)
        ip(name, "link", "set", "lo", "up")
        return name
    }

    @discardableResult
    private func ip(_ ns: String, _ args: String..., file: StaticString = #filePath, line: UInt = #line) -> Result {
        let r = run([Self.ipTool!, "-n", ns] + args)
        XCTAssertEqual(r.status, 0, "ip -n \(ns) \(args.joined(separator: " ")): \(r.err)", file: file, line: line)
        return r
    }

    private func exec(_ ns: String, _ argv: [String], timeout: Double = 20) -> Result {
        run([Self.ipTool!, "netns", "exec", ns] + argv, timeout: timeout)
    }

    private func kubebridge(_ ns: String, _ args: [String]) -> Result {
        exec(ns, [binary] + args, timeout: 30)
    }

    private func sysctl(_ ns: String, _ path: String) -> String {
        exec(ns, ["/bin/cat", "/proc/sys/" + path]).out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `ip -o [-6] route show EXTRA…`, one sorted line per route.
    private func routes(_ ns: String, v6: Bool = false, _ extra: String...) -> [String] {
        let r = run([Self.ipTool!, "-n", ns, "-o"] + (v6 ? ["-6"] : []) + ["route", "show"] + extra)
        return r.out.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.sorted()
    }

    private func everyRoute(_ ns: String) -> String {
        run([Self.ipTool!, "-n", ns, "-4", "route", "show", "table", "all"]).out
            + run([Self.ipTool!, "-n", ns, "-6", "route", "show", "table", "all"]).out
    }

    /// A namespace with a veth pair: kbv0 10.77.0.1/24 (and fd00:77::1/64), kbv1 up beside it.
    private func gatewayNamespace() -> String {
        let ns = makeNamespace("gw")
        ip(ns, "link", "add", "kbv0", "type", "veth", "peer", "name", "kbv1")
        ip(ns, "addr", "add", "10.77.0.1/24", "dev", "kbv0")
        ip(ns, "addr", "add", "fd00:77::1/64", "dev", "kbv0", "nodad")
        ip(ns, "link", "set", "kbv0", "up")
        ip(ns, "link", "set", "kbv1", "up")
        return ns
    }

    private var dirs: [String] {
        ["--sysctl-dir", scratch.appendingPathComponent("sysctl.d").path, "--state-dir", scratch.appendingPathComponent("state").path]
    }

    private var dropIn: String { scratch.appendingPathComponent("sysctl.d/90-kubebridge-routes.conf").path }
    private var stateFile: String { scratch.appendingPathComponent("state/routes.state").path }

    private func waitUntil(seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(100_000)
        }
        return condition()
    }

    // MARK: tests

    func testApplyIsExactIdempotentAndWithdrawRestores() throws {
        let ns = gatewayNamespace()
        ip(ns, "route", "add", "172.22.0.0/16", "via", "10.77.0.2", "proto", "static")
        let before = everyRoute(ns)
        XCTAssertEqual(sysctl(ns, "net/ipv4/ip_forward"), "0")

        let args = ["routes", "apply", "--pod-cidr", "172.20.0.0/16", "--service-cidr", "172.21.0.0/16", "--via", "10.77.0.2",
                    "--node-route", "172.23.3.0/24=10.77.0.3"] + dirs
        let first = kubebridge(ns, args)
        XCTAssertEqual(first.status, 0, first.out + first.err)
        XCTAssertEqual(routes(ns, "proto", "201"), [
            "172.20.0.0/16 via 10.77.0.2 dev kbv0",
            "172.21.0.0/16 via 10.77.0.2 dev kbv0",
            "172.23.3.0/24 via 10.77.0.3 dev kbv0",
        ])
        XCTAssertEqual(sysctl(ns, "net/ipv4/ip_forward"), "1")
        XCTAssertTrue(((try? String(contentsOfFile: dropIn, encoding: .utf8)) ?? "").contains("\nnet.ipv4.ip_forward = 1\n"))
        XCTAssertEqual(routes(ns, "proto", "static"), ["172.22.0.0/16 via 10.77.0.2 dev kbv0"], "a foreign route must survive apply")

        // A second apply is a no-op: same kernel state, and it says so.
        let after = everyRoute(ns)
        let second = kubebridge(ns, args)
        XCTAssertEqual(second.status, 0, second.out + second.err)
        XCTAssertTrue(second.out.contains("nothing to change"), second.out)
        XCTAssertFalse(second.out.contains("  added"), second.out)
        XCTAssertEqual(everyRoute(ns), after)

        // show lists what kubebridge owns.
        let show = kubebridge(ns, ["routes", "show"] + dirs)
        XCTAssertEqual(show.status, 0)
        XCTAssertTrue(show.out.contains("172.23.3.0/24 via 10.77.0.3 dev kbv0 proto kubebridge"), show.out)
        XCTAssertTrue(show.out.contains("net.ipv4.ip_forward = 1  (turned on by kubebridge)"), show.out)

        // withdraw leaves the namespace exactly as it was.
        let w = kubebridge(ns, ["routes", "withdraw"] + dirs)
        XCTAssertEqual(w.status, 0, w.out + w.err)
        XCTAssertEqual(everyRoute(ns), before)
        XCTAssertEqual(sysctl(ns, "net/ipv4/ip_forward"), "0")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dropIn))
        XCTAssertFalse(FileManager.default.fileExists(atPath: stateFile))
    }

    func testForeignRouteToTheSamePrefixBlocksApplyUntilAdopted() throws {
        let ns = gatewayNamespace()
        ip(ns, "route", "add", "172.21.0.0/16", "via", "10.77.0.2", "proto", "static")
        let before = everyRoute(ns)
        let args = ["routes", "apply", "--pod-cidr", "172.20.0.0/16", "--service-cidr", "172.21.0.0/16", "--via", "10.77.0.2"] + dirs

        let plan = kubebridge(ns, ["routes", "plan"] + args.dropFirst(2))
        XCTAssertEqual(plan.status, 3, plan.out + plan.err)
        let refused = kubebridge(ns, args)
        XCTAssertEqual(refused.status, 3, refused.out + refused.err)
        XCTAssertTrue(refused.err.contains(
            "route 172.21.0.0/16 via 10.77.0.2 dev kbv0 exists with proto static, not kubebridge's; pass --adopt to take it over"), refused.err)
        XCTAssertTrue(refused.out.contains("nothing was changed"), refused.out)
        XCTAssertEqual(everyRoute(ns), before, "a refused apply must change no route")
        XCTAssertEqual(sysctl(ns, "net/ipv4/ip_forward"), "0", "a refused apply must not turn on forwarding")

        // withdraw never touches it either.
        XCTAssertEqual(kubebridge(ns, ["routes", "withdraw"] + dirs).status, 0)
        XCTAssertEqual(everyRoute(ns), before)

        // --adopt takes it over: same prefix, now kubebridge's.
        let adopted = kubebridge(ns, args + ["--adopt"])
        XCTAssertEqual(adopted.status, 0, adopted.out + adopted.err)
        XCTAssertEqual(routes(ns, "proto", "201"), ["172.20.0.0/16 via 10.77.0.2 dev kbv0", "172.21.0.0/16 via 10.77.0.2 dev kbv0"])
        XCTAssertEqual(routes(ns, "proto", "static"), [])
    }

    func testConfigFileWithFlagsOnTop() throws {
        let ns = gatewayNamespace()
        let config = scratch.appendingPathComponent("kubebridge.toml")
        try """
            [routes]
            pod-cidr = ["172.20.0.0/16"]
            via = "10.77.0.9"
            table = 1000
            node-route = ["172.23.3.0/24=10.77.0.3"]
            """.write(to: config, atomically: true, encoding: .utf8)
        // --via on the command line wins over the file; everything else comes from the file.
        let apply = kubebridge(ns, ["routes", "apply", "--config", config.path, "--via", "10.77.0.2"] + dirs)
        XCTAssertEqual(apply.status, 0, apply.out + apply.err)
        XCTAssertEqual(routes(ns, "table", "1000", "proto", "201"),
                       ["172.20.0.0/16 via 10.77.0.2 dev kbv0", "172.23.3.0/24 via 10.77.0.3 dev kbv0"])
        XCTAssertEqual(kubebridge(ns, ["routes", "withdraw"] + dirs).status, 0)
        XCTAssertEqual(routes(ns, "table", "all", "proto", "201"), [])
    }

    func testForwardingThatWasAlreadyOnStaysOn() throws {
        let ns = gatewayNamespace()
        XCTAssertEqual(exec(ns, ["/bin/sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]).status, 0)
        let apply = kubebridge(ns, ["routes", "apply", "--pod-cidr", "172.20.0.0/16", "--via", "10.77.0.2"] + dirs)
        XCTAssertEqual(apply.status, 0, apply.out + apply.err)
        XCTAssertEqual(kubebridge(ns, ["routes", "withdraw"] + dirs).status, 0)
        XCTAssertEqual(sysctl(ns, "net/ipv4/ip_forward"), "1", "kubebridge did not turn forwarding on, so it must not turn it off")
        XCTAssertEqual(routes(ns, "proto", "201"), [])
    }

    func testIPv6RoutesTurnOnIPv6Forwarding() throws {
        let ns = gatewayNamespace()
        let apply = kubebridge(ns, ["routes", "apply", "--pod-cidr", "fd00:20::/64", "--pod-cidr", "172.20.0.0/16",
                                    "--via", "fd00:77::2", "--via", "10.77.0.2", "--table", "1000"] + dirs)
        XCTAssertEqual(apply.status, 0, apply.out + apply.err)
        XCTAssertEqual(routes(ns, v6: true, "table", "1000", "proto", "201"),
                       ["fd00:20::/64 via fd00:77::2 dev kbv0 metric 1024 pref medium"])
        XCTAssertEqual(routes(ns, "table", "1000", "proto", "201"), ["172.20.0.0/16 via 10.77.0.2 dev kbv0"])
        XCTAssertEqual(sysctl(ns, "net/ipv6/conf/all/forwarding"), "1")
        XCTAssertEqual(kubebridge(ns, ["routes", "withdraw"] + dirs).status, 0)
        XCTAssertEqual(sysctl(ns, "net/ipv6/conf/all/forwarding"), "0")
        XCTAssertEqual(routes(ns, v6: true, "table", "all", "proto", "201"), [])
    }

    func testWatchPutsBackADeletedRoute() throws {
        let ns = gatewayNamespace()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.ipTool!)
        p.arguments = ["netns", "exec", ns, binary, "routes", "apply", "--watch", "--pod-cidr", "172.20.0.0/16", "--via", "10.77.0.2"] + dirs
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        background.append(p)
        let want = ["172.20.0.0/16 via 10.77.0.2 dev kbv0"]
        XCTAssertTrue(waitUntil(seconds: 10) { routes(ns, "proto", "201") == want }, "watch did not install the route")

        // An administrator (or a CNI restart) deletes it; the watcher reinstalls it.
        ip(ns, "route", "del", "172.20.0.0/16")
        XCTAssertTrue(waitUntil(seconds: 10) { routes(ns, "proto", "201") == want }, "watch did not put the route back")

        // The interface bounces: IPv4 routes through it are flushed without per-route events.
        ip(ns, "link", "set", "kbv0", "down")
        // While the link is down the route is gone and cannot come back (its next hop is unreachable).
        XCTAssertEqual(routes(ns, "proto", "201"), [], "the kernel flushes routes through a link that goes down")
        ip(ns, "link", "set", "kbv0", "up")
        XCTAssertTrue(waitUntil(seconds: 10) { routes(ns, "proto", "201") == want }, "watch did not recover after a link bounce")

        p.terminate() // SIGTERM, as systemd sends it
        waitOrKill(p, seconds: 10)
        XCTAssertFalse(p.isRunning)
        XCTAssertEqual(p.terminationStatus, 0)
        XCTAssertEqual(routes(ns, "proto", "201"), want, "stopping the watcher leaves the routes installed")
    }

    /// office (192.168.2.10) — gateway (192.168.2.71 | 10.99.0.1) — cluster (10.99.0.2, pod 172.20.3.10).
    /// The office learns its route from `routes announce --format linux`; traffic to the pod
    /// only flows once `routes apply` has run on the gateway, and stops after `withdraw`.
    func testOfficeReachesAPodThroughTheGateway() throws {
        guard let python = Self.python else { throw XCTSkip("python3 (used as the pod's TCP server and the office client) is not installed") }
        let office = makeNamespace("office")
        let gw = makeNamespace("gw")
        let cluster = makeNamespace("cluster")
        ip(office, "link", "add", "o0", "type", "veth", "peer", "name", "g0", "netns", gw)
        ip(gw, "link", "add", "g1", "type", "veth", "peer", "name", "c0", "netns", cluster)
        ip(office, "addr", "add", "192.168.2.10/24", "dev", "o0")
        ip(office, "link", "set", "o0", "up")
        ip(gw, "addr", "add", "192.168.2.71/24", "dev", "g0")
        ip(gw, "addr", "add", "10.99.0.1/24", "dev", "g1")
        ip(gw, "link", "set", "g0", "up")
        ip(gw, "link", "set", "g1", "up")
        ip(cluster, "addr", "add", "10.99.0.2/24", "dev", "c0")
        ip(cluster, "link", "set", "c0", "up")
        // The pod address lives on a bridge with no ports (this kernel has no dummy driver).
        ip(cluster, "link", "add", "pods0", "type", "bridge")
        ip(cluster, "addr", "add", "172.20.3.10/24", "dev", "pods0")
        ip(cluster, "link", "set", "pods0", "up")
        // Cluster nodes reach the office through their default gateway, as on a real LAN.
        ip(cluster, "route", "add", "default", "via", "10.99.0.1")

        // The pod: a TCP server that answers "kubebridge-ok", bounded to 90 s.
        let server = Process()
        server.executableURL = URL(fileURLWithPath: Self.ipTool!)
        server.arguments = ["netns", "exec", cluster, python, "-c", """
            import socket, time
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("172.20.3.10", 8080)); s.listen(8); s.settimeout(0.5)
            end = time.time() + 90
            while time.time() < end:
                try:
                    c, _ = s.accept()
                except socket.timeout:
                    continue
                c.sendall(b"kubebridge-ok\\n"); c.close()
            """]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        background.append(server)

        let client = """
            import socket, sys
            try:
                c = socket.create_connection(("172.20.3.10", 8080), timeout=2)
                c.settimeout(2); print(c.recv(64).decode().strip())
            except OSError as e:
                print("connect failed:", e); sys.exit(1)
            """
        func connectFrom(_ ns: String) -> Result { exec(ns, [python, "-c", client], timeout: 10) }
        XCTAssertTrue(waitUntil(seconds: 10) { connectFrom(cluster).out.contains("kubebridge-ok") }, "the pod's server did not start")

        // Office hosts install what `announce` prints for Linux.
        let announce = run([binary, "routes", "announce", "--gateway", "192.168.2.71", "--format", "linux", "--pod-cidr", "172.20.0.0/16"])
        XCTAssertEqual(announce.status, 0, announce.err)
        XCTAssertTrue(announce.out.contains("ip route add 172.20.0.0/16 via 192.168.2.71\n"), announce.out)
        let script = scratch.appendingPathComponent("office-routes.sh")
        try announce.out.write(to: script, atomically: true, encoding: .utf8)
        let installed = exec(office, ["/bin/sh", "-e", script.path])
        XCTAssertEqual(installed.status, 0, installed.err)
        XCTAssertEqual(routes(office, "172.20.0.0/16"), ["172.20.0.0/16 via 192.168.2.71 dev o0"])

        // Before the gateway is set up: no forwarding, no route to the pods.
        let before = connectFrom(office)
        XCTAssertNotEqual(before.status, 0, "the pod must be unreachable before `routes apply`: \(before.out)")

        let apply = kubebridge(gw, ["routes", "apply", "--pod-cidr", "172.20.0.0/16", "--via", "10.99.0.2"] + dirs)
        XCTAssertEqual(apply.status, 0, apply.out + apply.err)
        XCTAssertEqual(sysctl(gw, "net/ipv4/ip_forward"), "1")

        let after = connectFrom(office)
        XCTAssertEqual(after.status, 0, after.out + after.err)
        XCTAssertEqual(after.out.trimmingCharacters(in: .whitespacesAndNewlines), "kubebridge-ok")
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/ping") || FileManager.default.isExecutableFile(atPath: "/bin/ping") {
            let ping = exec(office, ["ping", "-c", "1", "-W", "2", "172.20.3.10"])
            XCTAssertEqual(ping.status, 0, ping.out + ping.err)
        }

        // withdraw: the path is gone again.
        XCTAssertEqual(kubebridge(gw, ["routes", "withdraw"] + dirs).status, 0)
        XCTAssertEqual(sysctl(gw, "net/ipv4/ip_forward"), "0")
        XCTAssertNotEqual(connectFrom(office).status, 0, "the pod must be unreachable after `routes withdraw`")
    }
}

/// The shipped example configuration, config diagnostics and the systemd unit. No root needed.
final class RoutesPackagingTests: XCTestCase {
    private let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    private var binary: String {
        let bundle = Bundle(for: RoutesPackagingTests.self).bundleURL
        let candidates = [bundle.deletingLastPathComponent().appendingPathComponent("kubebridge"),
                          bundle.appendingPathComponent("kubebridge")]
        return (candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]).path
    }

    private func run(_ argv: [String]) throws -> (status: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Outputs here are a few KiB: read both to the end, then reap (bounded by the child's own exit).
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    func testExampleConfigDrivesAnnounce() throws {
        let r = try run([binary, "routes", "announce", "--config", root.appendingPathComponent("conf/routes.toml").path,
                         "--format", "dhcp-dnsmasq"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("dhcp-option=121,172.20.0.0/16,192.168.2.71,172.21.0.0/16,192.168.2.71,0.0.0.0/0,192.168.2.1\n"), r.out)
    }

    func testConfigMistakesAreReportedWithFileAndLine() throws {
        let file = NSTemporaryDirectory() + "kbtest-\(UUID().uuidString).toml"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try "[routes]\npod-cidr = \"172.20.0.0/16\"\nservice-cidr = \"172.21.1.0/16\"\nvai = \"10.0.0.1\"\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        let r = try run([binary, "routes", "plan", "--config", file])
        XCTAssertEqual(r.status, 64, r.out + r.err)
        XCTAssertTrue(r.err.contains("\(file):3: service-cidr: '172.21.1.0/16' has host bits set; did you mean 172.21.0.0/16?"), r.err)
        XCTAssertTrue(r.err.contains("\(file):4: unknown key 'vai' in [routes]; did you mean 'via'?"), r.err)
    }

    func testDHCPFormatWithoutDefaultGatewayFails() throws {
        let r = try run([binary, "routes", "announce", "--gateway", "192.168.2.71", "--pod-cidr", "172.20.0.0/16", "--format", "dhcp-isc"])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.err.contains("clients that receive option 121 ignore option 3"), r.err)
    }

    func testSystemdUnitVerifies() throws {
        let unit = try String(contentsOf: root.appendingPathComponent("systemd/kubebridge-routes.service"), encoding: .utf8)
        let lines = Set(unit.split(separator: "\n").map(String.init))
        for required in ["Type=oneshot", "RemainAfterExit=yes", "CapabilityBoundingSet=CAP_NET_ADMIN", "AmbientCapabilities=CAP_NET_ADMIN",
                         "ExecStart=/usr/local/bin/kubebridge routes apply --config /etc/kubebridge/kubebridge.toml",
                         "ExecStop=/usr/local/bin/kubebridge routes withdraw --config /etc/kubebridge/kubebridge.toml"] {
            XCTAssertTrue(lines.contains(required), "unit lacks \(required)")
        }
        let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let analyze else { throw XCTSkip("systemd-analyze not installed (apt-get install systemd)") }
        // verify insists that ExecStart exists: point it at the binary under test.
        let dir = NSTemporaryDirectory() + "kbtest-unit-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/kubebridge-routes.service"
        try unit.replacingOccurrences(of: "/usr/local/bin/kubebridge", with: binary).write(toFile: path, atomically: true, encoding: .utf8)
        let r = try run([analyze, "verify", path])
        XCTAssertEqual(r.status, 0, r.out + r.err)
        XCTAssertEqual(r.err.trimmingCharacters(in: .whitespacesAndNewlines), "", r.err)
    }
}
