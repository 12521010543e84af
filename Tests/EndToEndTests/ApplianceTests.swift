import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Issue #7, "The whole appliance, end to end": the mission in one test.
///
///     office ns                    gateway ns                          cluster ns
///     192.168.2.10/24 ── o0 ═ g0 ── 192.168.2.71/24
///                                  kubebridge dns :53
///                                  kubebridge routes   10.99.0.1/30 ── g1 ═ c0 ── 10.99.0.2/30
///                                                                         knotd :53   (kube-dns stand-in)
///                                                                         knotd :5300 (public upstream stand-in)
///                                                                         pods0 (bridge, no ports) 172.20.3.10
///                                                                         python HTTP server 172.20.3.10:8080
///
/// An office host resolves `web.prod.svc.cluster.local` through `kubebridge dns` on the gateway
/// and fetches `http://web.prod.svc.cluster.local:8080/` from the pod, with its route installed
/// from the Linux lines `kubebridge routes announce` prints. The fetch fails before the gateway
/// is set up, works after `kubebridge routes apply`, and fails again after `routes withdraw`.
///
/// Every namespace is created here (`kbap-<random>-…`) and deleted in tearDown, even after a
/// failure; every process runs inside one with `ip netns exec`, dies with the test process
/// (PR_SET_PDEATHSIG via `ChildProcess`) and is killed in tearDown; every command has a deadline;
/// the sysctl drop-in and routes state go to a temp dir, never the host's /etc or /var/lib.
final class ApplianceTests: XCTestCase {
    private let tag = String(UInt32.random(in: 0..<UInt32.max), radix: 16)
    private var namespaces: [String] = []
    private var children: [ChildProcess] = []
    private var scratch = URL(fileURLWithPath: "/")
    private var hostForwardBefore = ""
    private var hostOwnedBefore = ""
    private var hostFilesBefore: [String: Bool] = [:]

    private static let ipTool = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) }
    /// Files `routes apply` writes by default: they must not appear on (or vanish from) the host.
    private static let hostFiles = ["/etc/sysctl.d/90-kubebridge-routes.conf", "/var/lib/kubebridge/routes.state"]

    private var ipTool: String { Self.ipTool! }
    private var binary: String { KubebridgeProcess.binaryURL().path }

    override func setUpWithError() throws {
        guard getuid() == 0 else {
            throw XCTSkip("ApplianceTests need root to create network namespaces (ip netns add) and run a DNS server on port 53; skipped")
        }
        guard Self.ipTool != nil else { throw XCTSkip("iproute2's `ip` is not installed; skipped") }
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw E2EError("kubebridge binary not found next to the test bundle (\(binary)); build the package first")
        }
        let probe = "kbap-\(tag)-probe"
        guard run([ipTool, "netns", "add", probe]).status == 0 else {
            throw XCTSkip("network namespaces are not available here (ip netns add failed); skipped")
        }
        _ = run([ipTool, "netns", "del", probe])
        scratch = try E2E.makeTempDirectory("appliance-\(tag)")
        hostForwardBefore = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_forward", encoding: .utf8)) ?? ""
        hostOwnedBefore = run([ipTool, "route", "show", "table", "all", "proto", "201"]).out
        for file in Self.hostFiles { hostFilesBefore[file] = FileManager.default.fileExists(atPath: file) }
    }

    override func tearDown() {
        for child in children.reversed() { child.stop(signal: SIGTERM, grace: 3) }
        children = []
        for ns in namespaces.reversed() { _ = run([ipTool, "netns", "del", ns]) }
        namespaces = []
        if scratch.path != "/" { try? FileManager.default.removeItem(at: scratch) }
        if Self.ipTool != nil && getuid() == 0 {
            XCTAssertEqual((try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_forward", encoding: .utf8)) ?? "", hostForwardBefore,
                           "the host's ip_forward changed")
            XCTAssertEqual(run([ipTool, "route", "show", "table", "all", "proto", "201"]).out, hostOwnedBefore,
                           "the host's routing table changed")
            for (file, existed) in hostFilesBefore {
                XCTAssertEqual(FileManager.default.fileExists(atPath: file), existed, "the host's \(file) was created or removed")
            }
        }
        super.tearDown()
    }

    // MARK: helpers

    private struct Result {
        var status: Int32
        var out: String
        var err: String
        var all: String { out + err }
    }

    /// Runs a command with a deadline (SIGKILL after `timeout`); output goes through files.
    private func run(_ argv: [String], timeout: Double = 10) -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        let outURL = FileManager.default.temporaryDirectory.appendingPathComponent("kbap-\(UUID().uuidString).out")
        let errURL = outURL.appendingPathExtension("err")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
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
        do { try p.run() } catch { return Result(status: -1, out: "", err: "cannot start \(argv[0]): \(error)") }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        var killed = false
        if p.isRunning {
            killed = true
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        try? outH.close()
        try? errH.close()
        let out = (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
        return Result(status: killed ? -9 : p.terminationStatus, out: out,
                      err: err + (killed ? "\n[killed after \(timeout) s: \(argv.joined(separator: " "))]" : ""))
    }

    private func makeNamespace(_ role: String) -> String {
        let name = "kbap-\(tag)-\(role)"
        XCTAssertEqual(run([ipTool, "netns", "add", name]).status, 0, "ip netns add \(name)")
        namespaces.append(name)
        ip(name, "link", "set", "lo", "up")
        return name
    }

    @discardableResult
    private func ip(_ ns: String, _ args: String..., file: StaticString = #filePath, line: UInt = #line) -> Result {
        let r = run([ipTool, "-n", ns] + args)
        XCTAssertEqual(r.status, 0, "ip -n \(ns) \(args.joined(separator: " ")): \(r.err)", file: file, line: line)
        return r
    }

    private func exec(_ ns: String, _ argv: [String], timeout: Double = 10) -> Result {
        run([ipTool, "netns", "exec", ns] + argv, timeout: timeout)
    }

    private func kubebridge(_ ns: String, _ args: [String]) -> Result {
        exec(ns, [binary] + args, timeout: 20)
    }

    /// A long-running process inside `ns`; stopped in tearDown.
    private func spawn(_ name: String, in ns: String, _ argv: [String]) throws -> ChildProcess {
        let child = try ChildProcess(name: name, executable: ipTool, arguments: ["netns", "exec", ns] + argv,
                                     logURL: scratch.appendingPathComponent("\(name).log"))
        children.append(child)
        return child
    }

    private func sysctl(_ ns: String, _ path: String) -> String {
        exec(ns, ["/bin/cat", "/proc/sys/" + path]).out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func routes(_ ns: String, _ extra: String...) -> [String] {
        run([ipTool, "-n", ns, "-o", "-4", "route", "show"] + extra).out
            .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.sorted()
    }

    /// A knotd inside `ns` on `address@port`, serving `zones` (origin → zone text).
    private func startKnot(_ name: String, in ns: String, address: String, port: Int, zones: [String: String],
                           probe: String, dig: String) throws -> ChildProcess {
        let knotd = try E2E.requireTool("knotd", package: "knot")
        let dir = scratch.appendingPathComponent("knot-\(name)")
        for sub in ["run", "db", "zones"] {
            try FileManager.default.createDirectory(at: dir.appendingPathComponent(sub), withIntermediateDirectories: true)
        }
        for (origin, text) in zones {
            try text.write(to: dir.appendingPathComponent("zones/\(origin).zone"), atomically: true, encoding: .utf8)
        }
        let config = """
            server:
                rundir: "\(dir.path)/run"
                user: root:root
                listen: \(address)@\(port)
                udp-workers: 1
                tcp-workers: 1
                background-workers: 1
            log:
              - target: stderr
                any: info
            database:
                storage: "\(dir.path)/db"
            template:
              - id: default
                storage: "\(dir.path)/zones"
                file: "%s.zone"
                journal-content: none
                zonefile-sync: -1
            zone:
            \(zones.keys.sorted().map { "  - domain: \($0)" }.joined(separator: "\n"))

            """
        let configURL = dir.appendingPathComponent("knot.conf")
        try config.write(to: configURL, atomically: true, encoding: .utf8)
        let child = try spawn("knotd-\(name)", in: ns, [knotd, "-c", configURL.path])
        let ready = E2E.waitUntil(timeout: 10, interval: 0.1) {
            guard child.isRunning else { return false }
            let r = exec(ns, [dig, "@\(address)", "-p", String(port), probe, "+short", "+time=1", "+tries=1"], timeout: 3)
            return r.status == 0 && !r.out.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        }
        guard ready else {
            throw E2EError("knotd \(name) did not answer \(probe) on \(address)@\(port) in \(ns) within 10 s:\n\(E2E.tail(child.log))")
        }
        return child
    }

    // MARK: the test

    func testOfficeResolvesAndFetchesAServiceThroughTheGateway() throws {
        let started = Date()
        let dig = try E2E.requireTool("dig", package: "bind9-dnsutils")
        let python = try E2E.python()
        let unshare = try E2E.requireTool("unshare", package: "util-linux")
        let mount = try E2E.requireTool("mount", package: "mount")

        // The network.
        let office = makeNamespace("office")
        let gw = makeNamespace("gw")
        let cluster = makeNamespace("cluster")
        ip(office, "link", "add", "o0", "type", "veth", "peer", "name", "g0", "netns", gw)
        ip(gw, "link", "add", "g1", "type", "veth", "peer", "name", "c0", "netns", cluster)
        ip(office, "addr", "add", "192.168.2.10/24", "dev", "o0")
        ip(office, "link", "set", "o0", "up")
        ip(gw, "addr", "add", "192.168.2.71/24", "dev", "g0")
        ip(gw, "addr", "add", "10.99.0.1/30", "dev", "g1")
        ip(gw, "link", "set", "g0", "up")
        ip(gw, "link", "set", "g1", "up")
        ip(cluster, "addr", "add", "10.99.0.2/30", "dev", "c0")
        ip(cluster, "link", "set", "c0", "up")
        // The pod address lives on a bridge with no ports (this kernel has no dummy driver).
        ip(cluster, "link", "add", "pods0", "type", "bridge")
        ip(cluster, "addr", "add", "172.20.3.10/24", "dev", "pods0")
        ip(cluster, "link", "set", "pods0", "up")
        // The way back to the office. In a real cluster this is kube-proxy/CNI masquerade or the
        // nodes' routing (`routes plan` warns about exactly this: "no masquerade on this gateway");
        // here the cluster node simply routes the office subnet back through the gateway.
        ip(cluster, "route", "add", "192.168.2.0/24", "via", "10.99.0.1")

        // kube-dns stand-in on 10.99.0.2:53: the cluster zone and the pod network's reverse zone.
        let soa = Zones.soa
        _ = try startKnot("kubedns", in: cluster, address: "10.99.0.2", port: 53, zones: [
            "cluster.local": soa("cluster.local") + "web.prod.svc A 172.20.3.10\n",
            "20.172.in-addr.arpa": soa("20.172.in-addr.arpa") + "10.3 PTR 172-20-3-10.prod.pod.cluster.local.\n",
        ], probe: "web.prod.svc.cluster.local", dig: dig)
        // Public-resolver stand-in on 10.99.0.2:5300. It also serves the cluster name and the pod's
        // PTR with other data, so a query kubebridge sent to the wrong server would show.
        _ = try startKnot("upstream", in: cluster, address: "10.99.0.2", port: 5300, zones: [
            "example.test": soa("example.test") + "www A 198.51.100.10\n",
            "local": soa("local") + "web.prod.svc.cluster A 198.51.100.9\n",
            "172.in-addr.arpa": soa("172.in-addr.arpa") + "10.3.20 PTR misrouted.upstream.example.test.\n",
        ], probe: "www.example.test", dig: dig)

        // The pod: an HTTP server on 172.20.3.10:8080 with a body unique to this run, bounded to 120 s.
        let body = "kubebridge-appliance-\(tag)"
        let server = try spawn("pod-http", in: cluster, [python, "-c", """
            import http.server, os, sys, threading
            body = sys.argv[1].encode()
            class H(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                def log_message(self, *args):
                    pass
            threading.Timer(120, lambda: os._exit(0)).start()
            http.server.HTTPServer(("172.20.3.10", 8080), H).serve_forever()
            """, body])

        // An HTTP GET by name. No proxy (urllib honours http_proxy); exit 2: the name did not
        // resolve, 1: it resolved but the fetch failed, 0: the body is printed.
        let client = """
            import socket, sys, urllib.request
            host, url = sys.argv[1], sys.argv[2]
            try:
                addrs = sorted({a[4][0] for a in socket.getaddrinfo(host, 8080, socket.AF_INET, socket.SOCK_STREAM)})
            except OSError as e:
                print("resolve failed:", e); sys.exit(2)
            print("resolved", " ".join(addrs))
            try:
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                print("body", opener.open(url, timeout=2).read().decode())
            except Exception as e:
                print("fetch failed:", e); sys.exit(1)
            """
        XCTAssertTrue(E2E.waitUntil(timeout: 10, interval: 0.1) {
            server.isRunning && exec(cluster, [python, "-c", client, "172.20.3.10", "http://172.20.3.10:8080/"], timeout: 5)
                .out.contains("body \(body)")
        }, "the pod's HTTP server did not start:\n\(E2E.tail(server.log))")

        // The office host's resolver is kubebridge: a private mount namespace with its own
        // resolv.conf bind-mounted over /etc/resolv.conf (the host's file is never touched).
        let resolvConf = scratch.appendingPathComponent("office-resolv.conf")
        try "nameserver 192.168.2.71\noptions timeout:2 attempts:1\n".write(to: resolvConf, atomically: true, encoding: .utf8)
        func fetchFromOffice() -> Result {
            exec(office, [unshare, "--mount", "--propagation", "private", "/bin/sh", "-c",
                          "\"$1\" --bind \"$2\" /etc/resolv.conf && exec \"$3\" -c \"$4\" web.prod.svc.cluster.local \"$5\"",
                          "sh", mount, resolvConf.path, python, client, "http://web.prod.svc.cluster.local:8080/"], timeout: 10)
        }
        func assertFetchFails(_ when: String, file: StaticString = #filePath, line: UInt = #line) {
            let r = fetchFromOffice()
            // The name resolves through kubebridge; only the path to the pod is missing.
            XCTAssertEqual(r.status, 1, "\(when): the fetch should resolve the name and then fail to connect: \(r.all)", file: file, line: line)
            XCTAssertTrue(r.out.contains("resolved 172.20.3.10\n"), "\(when): \(r.all)", file: file, line: line)
            XCTAssertFalse(r.out.contains(body), "\(when): the pod must be unreachable: \(r.all)", file: file, line: line)
        }

        // kubebridge dns on the gateway.
        let dns = try spawn("kubebridge-dns", in: gw, [binary, "dns", "--listen", "192.168.2.71:53", "--cluster-dns", "10.99.0.2",
                                                       "--pod-cidr", "172.20.0.0/16", "--service-cidr", "172.21.0.0/16",
                                                       "--upstream", "10.99.0.2:5300"])
        XCTAssertTrue(E2E.waitUntil(timeout: 10) { dns.log.contains("listening on") || !dns.isRunning },
                      "kubebridge dns did not print `listening on`:\n\(E2E.tail(dns.log))")
        XCTAssertTrue(dns.isRunning, "kubebridge dns exited:\n\(E2E.tail(dns.log))")

        // (1) DNS from the office: cluster name, reverse lookup of the pod, a public name.
        func digFromOffice(_ args: String...) -> Result {
            exec(office, [dig, "@192.168.2.71"] + args + ["+short", "+time=2", "+tries=1"], timeout: 5)
        }
        let a = digFromOffice("web.prod.svc.cluster.local")
        XCTAssertEqual(a.status, 0, a.all)
        XCTAssertEqual(a.out.trimmingCharacters(in: .whitespacesAndNewlines), "172.20.3.10", "cluster name via kube-dns: \(a.all)")
        let ptr = digFromOffice("-x", "172.20.3.10")
        XCTAssertEqual(ptr.status, 0, ptr.all)
        XCTAssertEqual(ptr.out.trimmingCharacters(in: .whitespacesAndNewlines), "172-20-3-10.prod.pod.cluster.local.",
                       "pod PTR via kube-dns: \(ptr.all)")
        let pub = digFromOffice("www.example.test")
        XCTAssertEqual(pub.status, 0, pub.all)
        XCTAssertEqual(pub.out.trimmingCharacters(in: .whitespacesAndNewlines), "198.51.100.10", "public name via upstream: \(pub.all)")

        // (3) Before the office route and before the gateway is set up: no path to the pod.
        assertFetchFails("before the announce lines and `routes apply`")

        // The office host runs the Linux lines `routes announce` prints.
        let announce = run([binary, "routes", "announce", "--gateway", "192.168.2.71", "--pod-cidr", "172.20.0.0/16",
                            "--service-cidr", "172.21.0.0/16", "--format", "linux"])
        XCTAssertEqual(announce.status, 0, announce.all)
        XCTAssertTrue(announce.out.contains("ip route add 172.20.0.0/16 via 192.168.2.71\n"), announce.out)
        let script = scratch.appendingPathComponent("office-routes.sh")
        try announce.out.write(to: script, atomically: true, encoding: .utf8)
        let installed = exec(office, ["/bin/sh", "-e", script.path])
        XCTAssertEqual(installed.status, 0, installed.all)
        XCTAssertEqual(routes(office, "172.20.0.0/16") + routes(office, "172.21.0.0/16"),
                       ["172.20.0.0/16 via 192.168.2.71 dev o0", "172.21.0.0/16 via 192.168.2.71 dev o0"], "office routes from `announce`")

        // The office knows the way, but the gateway neither forwards nor has a route yet.
        assertFetchFails("after the announce lines, before `routes apply`")

        // (2)+(3) The gateway is set up: the office fetches the service by name from the pod.
        let dirs = ["--sysctl-dir", scratch.appendingPathComponent("sysctl.d").path,
                    "--state-dir", scratch.appendingPathComponent("state").path]
        let apply = kubebridge(gw, ["routes", "apply", "--pod-cidr", "172.20.0.0/16", "--service-cidr", "172.21.0.0/16",
                                    "--via", "10.99.0.2"] + dirs)
        XCTAssertEqual(apply.status, 0, apply.all)
        XCTAssertEqual(sysctl(gw, "net/ipv4/ip_forward"), "1")
        XCTAssertEqual(routes(gw, "proto", "201"), ["172.20.0.0/16 via 10.99.0.2 dev g1", "172.21.0.0/16 via 10.99.0.2 dev g1"])
        let fetched = fetchFromOffice()
        XCTAssertEqual(fetched.status, 0, "the office should fetch the pod's page by name after `routes apply`: \(fetched.all)")
        XCTAssertEqual(fetched.out, "resolved 172.20.3.10\nbody \(body)\n", fetched.all)

        // (4) withdraw on the gateway: the path is gone again (DNS still answers).
        let withdraw = kubebridge(gw, ["routes", "withdraw"] + dirs)
        XCTAssertEqual(withdraw.status, 0, withdraw.all)
        XCTAssertEqual(sysctl(gw, "net/ipv4/ip_forward"), "0")
        XCTAssertEqual(routes(gw, "proto", "201"), [])
        assertFetchFails("after `routes withdraw`")

        // kubebridge dns stops cleanly on SIGTERM.
        let exit = dns.stop(signal: SIGTERM, grace: 5)
        XCTAssertTrue(exit.isCleanExit, "kubebridge dns on SIGTERM: \(exit)\n\(E2E.tail(dns.log))")

        let elapsed = Date().timeIntervalSince(started)
        XCTAssertLessThan(elapsed, 30, "the appliance test should finish within 30 s")
        print("ApplianceTests: whole appliance checked in \(String(format: "%.1f", elapsed)) s")
    }
}
