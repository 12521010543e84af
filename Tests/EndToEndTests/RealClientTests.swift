import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Issue 7: real resolver clients in front of kubebridge.
///  * nginx (Debian package `nginx`; `nginx-light` pulls it in too; or any nginx in PATH) resolving a
///    `proxy_pass http://$backend` at request time through kubebridge, with tiny HTTP
///    backends on 127.0.0.21/22 — through a kube-dns outage (serve-stale) and an address
///    change, with and without `ipv6=off` (A + AAAA lookups need NODATA for AAAA).
///  * glibc (`getent ahosts`) and musl (`Fixtures/musl_lookup.c.in`, static) in a private network +
///    mount namespace, with kubebridge on 127.0.0.1:53 and a Kubernetes-style search list in a
///    bind-mounted resolv.conf.
final class RealClientTests: EndToEndTestCase {
    private var ownKnots: [KnotServer] = []
    private var helpers: [ChildProcess] = []
    private var scratch: [URL] = []

    override func tearDown() {
        helpers.forEach { $0.stop(grace: 3) }
        helpers = []
        ownKnots.forEach { $0.stop() }
        ownKnots = []
        scratch.forEach { try? FileManager.default.removeItem(at: $0) }
        scratch = []
        super.tearDown()
    }

    private func startKnot(_ name: String, port: UInt16? = nil, webAddress: String, ttl: Int = 1) throws -> KnotServer {
        let zone = Zones.soa("cluster.local") + """
        web.prod.svc \(ttl) A \(webAddress)
        kubernetes.default.svc A 172.21.0.1

        """
        let knot = try KnotServer(name: name, address: "127.0.0.2", port: port, zones: ["cluster.local": zone])
        ownKnots.append(knot)
        return knot
    }

    private func tempDirectory(_ prefix: String) throws -> URL {
        let dir = try E2E.makeTempDirectory(prefix)
        scratch.append(dir)
        return dir
    }

    // MARK: - nginx

    /// nginx from PATH; when missing and running as root with apt-get, installs the Debian
    /// package `nginx` once (set KUBEBRIDGE_E2E_NO_APT=1 to forbid that).
    private static var nginxInstallTried = false
    private func nginxBinary() throws -> String {
        if let path = E2E.tool("nginx") { return path }
        if !Self.nginxInstallTried, getuid() == 0, ProcessInfo.processInfo.environment["KUBEBRIDGE_E2E_NO_APT"] == nil,
           let apt = E2E.tool("apt-get") {
            Self.nginxInstallTried = true
            _ = try? E2E.runCommand(apt, ["install", "-y", "-q", "--no-install-recommends", "nginx"], timeout: 240)
            if let path = E2E.tool("nginx") { return path }
        }
        throw XCTSkip("nginx is not installed and could not be installed (Debian: apt-get install nginx); "
                      + "the nginx resolver tests need it")
    }

    /// HTTP backends: one listener per `address=body` on `port`, answering every GET with body.
    private func startBackends(port: UInt16, _ bodies: [String: String]) throws {
        let dir = try tempDirectory("http-backend")
        let script = dir.appendingPathComponent("backend.py")
        try """
        import http.server, os, sys, threading, time
        port = int(sys.argv[1])
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = self.server.body
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            def log_message(self, *a):
                pass
        for pair in sys.argv[2:]:
            address, body = pair.split("=", 1)
            server = http.server.ThreadingHTTPServer((address, port), Handler)
            server.body = body.encode()
            threading.Thread(target=server.serve_forever, daemon=True).start()
        print("backends ready", flush=True)
        parent = os.getppid()
        while os.getppid() == parent:
            time.sleep(0.2)

        """.write(to: script, atomically: true, encoding: .utf8)
        let child = try ChildProcess(name: "http-backends", executable: try E2E.python(),
                                     arguments: [script.path, String(port)] + bodies.map { "\($0.key)=\($0.value)" },
                                     logURL: dir.appendingPathComponent("backend.log"))
        helpers.append(child)
        guard E2E.waitUntil(timeout: 10, { child.log.contains("backends ready") || !child.isRunning }), child.isRunning else {
            throw E2EError("HTTP backends did not start:\n\(E2E.tail(child.log))")
        }
    }

    /// A port free on every given address (TCP).
    private func commonFreePort(_ hosts: [String]) throws -> UInt16 {
        for _ in 0..<50 {
            let port = try E2E.freePort(host: hosts[0])
            if try hosts.dropFirst().allSatisfy({ try Self.canBindTCP($0, port) }) { return port }
        }
        throw E2EError("no common free port on \(hosts)")
    }

    private static func canBindTCP(_ host: String, _ port: UInt16) throws -> Bool {
        let address = try SocketAddress(host: host, port: port)
        let fd = socket(address.family, E2E.tcpSocketType, 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return address.withSockaddr { bind(fd, $0, $1) } == 0
    }

    struct Nginx {
        let child: ChildProcess
        let prefix: URL
        var errorLog: String { (try? String(contentsOf: prefix.appendingPathComponent("error.log"), encoding: .utf8)) ?? "" }
    }

    /// nginx in the foreground (one process) with one server per `(port, resolver options)`,
    /// each proxying `/` to `http://web.prod.svc.cluster.local:<backendPort>` resolved at
    /// request time through kubebridge.
    private func startNginx(resolverPort: UInt16, backendPort: UInt16, servers: [(port: UInt16, resolverOptions: String)]) throws -> Nginx {
        let nginx = try nginxBinary()
        let prefix = try tempDirectory("nginx")
        for sub in ["logs", "tmp"] {
            try FileManager.default.createDirectory(at: prefix.appendingPathComponent(sub), withIntermediateDirectories: true)
        }
        let p = prefix.path
        let serverBlocks = servers.map { server in
            """
                server {
                    listen 127.0.0.1:\(server.port);
                    resolver 127.0.0.1:\(resolverPort) \(server.resolverOptions);
                    resolver_timeout 5s;
                    location / {
                        set $backend "web.prod.svc.cluster.local";
                        proxy_pass http://$backend:\(backendPort);
                        proxy_connect_timeout 2s;
                        proxy_read_timeout 5s;
                    }
                }
            """
        }.joined(separator: "\n")
        let config = """
        daemon off;
        master_process off;
        worker_processes 1;
        pid \(p)/nginx.pid;
        error_log \(p)/error.log info;
        events { worker_connections 128; }
        http {
            access_log off;
            client_body_temp_path \(p)/tmp/body;
            proxy_temp_path \(p)/tmp/proxy;
            fastcgi_temp_path \(p)/tmp/fastcgi;
            uwsgi_temp_path \(p)/tmp/uwsgi;
            scgi_temp_path \(p)/tmp/scgi;
        \(serverBlocks)
        }

        """
        let configURL = prefix.appendingPathComponent("nginx.conf")
        try config.write(to: configURL, atomically: true, encoding: .utf8)
        let child = try ChildProcess(name: "nginx", executable: nginx,
                                     arguments: ["-p", p + "/", "-e", p + "/error.log", "-c", configURL.path],
                                     logURL: prefix.appendingPathComponent("stdout.log"))
        helpers.append(child)
        let ready = E2E.waitUntil(timeout: 10, interval: 0.05) {
            !child.isRunning || servers.allSatisfy { (try? RawDNS.TCPConnection(host: "127.0.0.1", port: $0.port, timeout: 0.5)) != nil }
        }
        let handle = Nginx(child: child, prefix: prefix)
        guard ready, child.isRunning else {
            throw E2EError("nginx did not start:\n\(E2E.tail(child.log))\n\(E2E.tail(handle.errorLog))")
        }
        return handle
    }

    /// GET http://127.0.0.1:port/ : (HTTP status, body); status 0 when no HTTP response came.
    private func httpGet(port: UInt16) throws -> (status: Int, body: String) {
        let code = """
        import sys, urllib.request, urllib.error
        try:
            r = urllib.request.urlopen("http://127.0.0.1:%s/" % sys.argv[1], timeout=8)
            print(r.status); print(r.read().decode(), end="")
        except urllib.error.HTTPError as e:
            print(e.code); print(e.read().decode(errors="replace")[:200], end="")
        except Exception as e:
            print(0); print(repr(e), end="")
        """
        let result = try E2E.runCommand(try E2E.python(), ["-c", code, String(port)], timeout: 15)
        let lines = result.output.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
        return (Int(lines.first ?? "") ?? 0, lines.count > 1 ? String(lines[1]) : "")
    }

    /// The whole nginx story on one set of processes:
    ///  1. both servers (ipv6=off, and A+AAAA) reach backend-one via kubebridge;
    ///  (a) kube-dns stopped: after nginx's valid=2s and the TTL 1 expired, still backend-one
    ///      (kubebridge serves the cluster name stale; AAAA NODATA stays cached);
    ///  (b) kube-dns back with web -> 127.0.0.22: after valid + stale-ttl (2) + TTL, backend-two.
    func testNginxResolvesThroughKubebridgeAcrossOutageAndAddressChange() throws {
        _ = try nginxBinary()
        let backendPort = try commonFreePort(["127.0.0.21", "127.0.0.22"])
        try startBackends(port: backendPort, ["127.0.0.21": "backend-one", "127.0.0.22": "backend-two"])
        let knot = try startKnot("kube-dns-nginx", webAddress: "127.0.0.21")
        let config = try E2E.writeDNSConfig(["stale-ttl = 2"])
        scratch.append(URL(fileURLWithPath: config).deletingLastPathComponent())
        let kb = try startKubebridge(["--config", config, "--cluster-zone", "cluster.local", "--cluster-dns", knot.endpoint,
                                      "--upstream", "127.0.0.9:9"] + Self.timeouts(upstreamMs: 300, queryMs: 1000))
        let v4Port = try E2E.freePort(host: "127.0.0.1"), dualPort = try E2E.freePort(host: "127.0.0.1")
        let nginx = try startNginx(resolverPort: kb.port, backendPort: backendPort,
                                   servers: [(v4Port, "valid=2s ipv6=off"), (dualPort, "valid=2s")])
        func context() -> String { "nginx error.log:\n\(E2E.tail(nginx.errorLog, lines: 15))" }

        for (label, port) in [("ipv6=off", v4Port), ("A+AAAA", dualPort)] {
            let r = try httpGet(port: port)
            XCTAssertEqual(r.status, 200, "\(label): first request through nginx: \(r)\n\(context())")
            XCTAssertEqual(r.body, "backend-one", "\(label): \(r)")
        }

        // (a) kube-dns down for longer than nginx's valid=2s plus the record's TTL 1.
        knot.stop()
        Thread.sleep(forTimeInterval: 3.3)
        for (label, port) in [("ipv6=off", v4Port), ("A+AAAA", dualPort)] {
            let r = try httpGet(port: port)
            XCTAssertEqual(r.status, 200, "\(label): kube-dns down, nginx re-resolved after valid=2s: \(r)\n\(context())")
            XCTAssertEqual(r.body, "backend-one", "\(label): \(r)")
        }

        // (b) kube-dns back with a new address.
        let changedAt = Date()
        _ = try startKnot("kube-dns-nginx-2", port: knot.port, webAddress: "127.0.0.22")
        for (label, port) in [("ipv6=off", v4Port), ("A+AAAA", dualPort)] {
            var last = (status: 0, body: "")
            let switched = E2E.waitUntil(timeout: 9, interval: 0.3) {
                last = (try? httpGet(port: port)) ?? (0, "request failed")
                return last.status == 200 && last.body == "backend-two"
            }
            XCTAssertTrue(switched, "\(label): nginx still not at the new backend \(Date().timeIntervalSince(changedAt)) s after "
                          + "the A record changed (valid 2 s + stale-ttl 2 s + TTL 1 s); last: \(last)\n\(context())")
        }
        XCTAssertTrue(nginx.child.isRunning)
    }

    /// nginx without ipv6=off asks A and AAAA for every name and fails the lookup if either
    /// gets an error rcode: a name with only an A record must get NODATA for AAAA.
    func testNginxDualStackLookupGetsNODATAForMissingAAAA() throws {
        _ = try nginxBinary()
        let backendPort = try commonFreePort(["127.0.0.21"])
        try startBackends(port: backendPort, ["127.0.0.21": "backend-one"])
        let knot = try startKnot("kube-dns-nginx", webAddress: "127.0.0.21", ttl: 30)
        let kb = try startKubebridge(["--cluster-zone", "cluster.local", "--cluster-dns", knot.endpoint,
                                      "--upstream", "127.0.0.9:9"] + Self.timeouts(upstreamMs: 300, queryMs: 1000))
        let dualPort = try E2E.freePort(host: "127.0.0.1")
        let nginx = try startNginx(resolverPort: kb.port, backendPort: backendPort, servers: [(dualPort, "valid=2s")])
        for attempt in 0..<2 {   // a miss (both in flight at once), then cache hits
            let r = try httpGet(port: dualPort)
            XCTAssertEqual(r.status, 200, "request \(attempt): \(r)\nnginx error.log:\n\(E2E.tail(nginx.errorLog, lines: 15))")
            XCTAssertEqual(r.body, "backend-one")
        }
        // What nginx saw, checked raw the way nginx checks it (no EDNS, flag mask 0xf870 clear).
        let aaaa = try XCTUnwrap(rawUDP(kb, QueryBuilder(id: 0x4E47, name: "web.prod.svc.cluster.local.", type: DNSType.aaaa).bytes))
        XCTAssertEqual(aaaa.rcode, DNSRcode.noError, "AAAA for an A-only name must be NODATA: \(aaaa)")
        XCTAssertEqual(aaaa.answers.count, 0, "\(aaaa)")
        XCTAssertEqual(aaaa.flags & 0x0070, 0, "AD, CD or Z set: nginx drops the answer: \(aaaa)")
    }

    // MARK: - glibc

    /// setns(2) is a _GNU_SOURCE declaration Swift's Glibc module does not show: look it up.
    private static let cloneNewNet: Int32 = 0x4000_0000   // CLONE_NEWNET
    private static func setns(_ fd: Int32, _ type: Int32) -> Int32 {
        typealias SetNS = @convention(c) (Int32, Int32) -> Int32
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "setns") else { errno = ENOSYS; return -1 }
        return unsafeBitCast(symbol, to: SetNS.self)(fd, type)
    }

    /// `getent ahosts web` with `search prod.svc.cluster.local svc.cluster.local cluster.local`
    /// and `options ndots:5`, against kubebridge on 127.0.0.1:53 in a network namespace of
    /// the test's own; the resolv.conf is bind-mounted in a private mount namespace.
    /// `Fixtures/musl_lookup.c.in` (C; not `.c`, which SwiftPM would compile into this target),
    /// linked statically against musl (Debian: musl-tools).
    private func buildMuslClient() throws -> String {
        let cc = try E2E.requireTool("musl-gcc", package: "musl-tools")
        let out = try tempDirectory("musl").appendingPathComponent("musl_lookup").path
        let source = E2E.fixturesDirectory.appendingPathComponent("musl_lookup.c.in").path
        let r = try E2E.runCommand(cc, ["-static", "-O1", "-o", out, "-x", "c", source], timeout: 60)
        guard r.exitStatus == 0 else { throw E2EError("musl-gcc failed: \(r.output)") }
        return out
    }

    func testGlibcAndMuslResolveShortNamesThroughTheSearchList() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root for network and mount namespaces") }
        let ip = try E2E.requireTool("ip", package: "iproute2")
        let unshare = try E2E.requireTool("unshare", package: "util-linux")
        let getent = try E2E.requireTool("getent", package: "libc-bin")

        // Move this thread (and everything it spawns from now on) into a fresh netns.
        let namespace = "kbtest-glibc-\(getpid())-\(UInt16.random(in: 0...0xFFFF))"
        let added = try E2E.runCommand(ip, ["netns", "add", namespace], timeout: 10)
        guard added.exitStatus == 0 else { throw XCTSkip("ip netns add failed: \(added.output)") }
        let originalNS = open("/proc/thread-self/ns/net", O_RDONLY)
        let newNS = open("/run/netns/\(namespace)", O_RDONLY)
        defer {
            if originalNS >= 0 { _ = Self.setns(originalNS, Self.cloneNewNet); close(originalNS) }
            if newNS >= 0 { close(newNS) }
            _ = try? E2E.runCommand(ip, ["netns", "del", namespace], timeout: 10)
        }
        guard originalNS >= 0, newNS >= 0, Self.setns(newNS, Self.cloneNewNet) == 0 else {
            throw E2EError("cannot enter network namespace \(namespace): errno \(errno)")
        }
        // Everything below runs inside the namespace; stop the children before leaving it.
        defer {
            helpers.forEach { $0.stop(grace: 3) }
            ownKnots.forEach { $0.stop() }
        }
        let links = try E2E.runCommand(ip, ["-o", "link"], timeout: 10).output
        XCTAssertEqual(links.split(separator: "\n").count, 1, "not in a fresh namespace: \(links)")
        // lo, plus a LAN-like interface with IPv4 and IPv6 addresses: glibc's AI_ADDRCONFIG
        // ignores loopback, and without them `ahostsv4` never asks DNS and `ahosts` sends no AAAA.
        for command in [["link", "set", "lo", "up"], ["link", "add", "kbv0", "type", "veth", "peer", "name", "kbv1"],
                        ["addr", "add", "10.254.0.1/24", "dev", "kbv0"], ["-6", "addr", "add", "fd00:99::1/64", "dev", "kbv0", "nodad"],
                        ["link", "set", "kbv0", "up"], ["link", "set", "kbv1", "up"]] {
            let r = try E2E.runCommand(ip, command, timeout: 10)
            XCTAssertEqual(r.exitStatus, 0, "ip \(command.joined(separator: " ")): \(r.output)")
        }

        let knot = try startKnot("kube-dns-glibc", webAddress: "172.21.0.10", ttl: 30)
        let kb = try startKubebridge(["--listen", "127.0.0.1:53", "--cluster-zone", "cluster.local", "--cluster-dns", knot.endpoint,
                                      "--upstream", "127.0.0.9:9"] + Self.timeouts(upstreamMs: 300, queryMs: 1000))
        defer { kb.stop() }

        let dir = try tempDirectory("glibc")
        let resolvConf = dir.appendingPathComponent("resolv.conf")
        try """
        nameserver 127.0.0.1
        search prod.svc.cluster.local svc.cluster.local cluster.local
        options ndots:5 timeout:2 attempts:1

        """.write(to: resolvConf, atomically: true, encoding: .utf8)
        func getentInside(_ database: String, _ name: String) throws -> E2E.CommandResult {
            try E2E.runCommand(unshare, ["-m", "--propagation", "private", "--", "/bin/sh", "-c",
                                         "mount --bind \"$0\" /etc/resolv.conf && exec \"$1\" \"$2\" \"$3\"",
                                         resolvConf.path, getent, database, name], timeout: 20)
        }

        /// What kubebridge answers for each name of the search list (for failure messages).
        func searchDiagnostics(_ kb: KubebridgeProcess, _ name: String, types: [String]) -> String {
            let names = ["prod.svc.cluster.local", "svc.cluster.local", "cluster.local"].map { "\(name).\($0)" } + [name]
            return names.flatMap { n in types.map { t in
                let r = try? dig(kb, n, t, timeoutSeconds: 2)
                return "  \(n) \(t): \(r?.status ?? "no answer") \(r?.answers.map(\.description) ?? []) flags \(r?.flags.sorted() ?? [])"
            } }.joined(separator: "\n")
        }

        let short = try getentInside("ahosts", "web")
        XCTAssertEqual(short.exitStatus, 0, "getent ahosts web: \(short.output)\nkubebridge:\n\(E2E.tail(kb.stderr))")
        XCTAssertTrue(short.output.contains("172.21.0.10"), "getent ahosts web: \(short.output)")
        XCTAssertTrue(short.output.contains("web.prod.svc.cluster.local"), "canonical name missing: \(short.output)")
        XCTAssertLessThan(short.elapsed, 3, "glibc waited for a timeout: \(short.output)")

        let twoLabels = try getentInside("ahostsv4", "kubernetes.default")
        XCTAssertEqual(twoLabels.exitStatus, 0, "getent ahostsv4 kubernetes.default: \(twoLabels.output)\n"
                       + searchDiagnostics(kb, "kubernetes.default", types: ["A"]))
        XCTAssertTrue(twoLabels.output.contains("172.21.0.1 "), "\(twoLabels.output)")

        // The full name has 4 dots < ndots 5: the search list is tried first, and the
        // junk names (web.prod.svc.cluster.local.prod.svc.cluster.local, …) get NXDOMAIN fast.
        let full = try getentInside("ahosts", "web.prod.svc.cluster.local")
        XCTAssertEqual(full.exitStatus, 0, "getent ahosts web.prod.svc.cluster.local: \(full.output)")
        XCTAssertTrue(full.output.contains("172.21.0.10"), "\(full.output)")
        XCTAssertLessThan(full.elapsed, 3, "\(full.output)")

        // musl's resolver (Alpine-based containers, appliances): A and AAAA at the same time,
        // no EDNS, and the whole lookup fails if either answer is an error.
        let musl = try buildMuslClient()
        func muslInside(_ name: String, _ family: String = "any") throws -> E2E.CommandResult {
            try E2E.runCommand(unshare, ["-m", "--propagation", "private", "--", "/bin/sh", "-c",
                                         "mount --bind \"$0\" /etc/resolv.conf && exec \"$1\" \"$2\" \"$3\"",
                                         resolvConf.path, musl, name, family], timeout: 20)
        }
        for name in ["web", "web.prod.svc.cluster.local"] {
            let r = try muslInside(name)
            XCTAssertEqual(r.exitStatus, 0, "musl getaddrinfo \(name): \(r.output)\n"
                           + searchDiagnostics(kb, name, types: ["A", "AAAA"]))
            XCTAssertEqual(r.output.split(separator: "\n").map(String.init), ["172.21.0.10"], "musl \(name): \(r.output)")
            XCTAssertLessThan(r.elapsed, 3, "musl waited for a timeout on \(name): \(r.output)")
        }
        let musl2 = try muslInside("kubernetes.default", "inet")
        XCTAssertEqual(musl2.exitStatus, 0, "musl kubernetes.default: \(musl2.output)")
        XCTAssertEqual(musl2.output.split(separator: "\n").map(String.init), ["172.21.0.1"], "\(musl2.output)")
        let missing = try muslInside("nosuch.prod.svc.cluster.local")
        XCTAssertEqual(missing.exitStatus, 2, "a name that does not exist must fail: \(missing.output)")
        XCTAssertLessThan(missing.elapsed, 3, "NXDOMAIN should be fast: \(missing.output)")

        // The host's resolv.conf is untouched by the private mount.
        let hostResolv = (try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8)) ?? ""
        XCTAssertFalse(hostResolv.contains("search prod.svc.cluster.local"), "the bind mount leaked to the host")
    }
}
