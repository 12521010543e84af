import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real authoritative server: `knotd -c knot.conf` in the foreground on
/// `address@port` (UDP and TCP), with its config, zone files and databases in a temp dir.
final class KnotServer {
    let name: String
    let address: String
    let port: UInt16
    let directory: URL
    let zones: [String: String]
    private let child: ChildProcess

    /// `address:port`, as kubebridge's `--cluster-dns` / `--upstream` / `--forward` expect it.
    var endpoint: String { "\(address):\(port)" }
    var log: String { child.log }
    var isRunning: Bool { child.isRunning }

    /// `zones` maps an origin ("cluster.local") to its zone file text. `port` nil picks a
    /// free one; a given port restarts a server where a stopped one listened.
    init(name: String, address: String, port fixedPort: UInt16? = nil, zones: [String: String]) throws {
        let knotd = try E2E.requireTool("knotd", package: "knot")
        self.name = name
        self.address = address
        self.zones = zones
        port = try fixedPort ?? E2E.freePort(host: address)
        directory = try E2E.makeTempDirectory("knot-\(name)")
        let fm = FileManager.default
        for sub in ["run", "db", "zones"] {
            try fm.createDirectory(at: directory.appendingPathComponent(sub), withIntermediateDirectories: true)
        }
        for (origin, text) in zones {
            try text.write(to: directory.appendingPathComponent("zones/\(origin).zone"), atomically: true, encoding: .utf8)
        }
        let config = """
        server:
            rundir: "\(directory.path)/run"
        \(getuid() == 0 ? "    user: root:root" : "")
            listen: \(address)@\(port)
            udp-workers: 1
            tcp-workers: 1
            background-workers: 1
        log:
          - target: stderr
            any: info
        database:
            storage: "\(directory.path)/db"
        template:
          - id: default
            storage: "\(directory.path)/zones"
            file: "%s.zone"
            journal-content: none
            zonefile-sync: -1
        zone:
        \(zones.keys.sorted().map { "  - domain: \($0)" }.joined(separator: "\n"))

        """
        let configURL = directory.appendingPathComponent("knot.conf")
        try config.write(to: configURL, atomically: true, encoding: .utf8)
        child = try ChildProcess(name: "knotd-\(name)", executable: knotd, arguments: ["-c", configURL.path],
                                 logURL: directory.appendingPathComponent("knotd.log"))
        // Ready when every zone answers its SOA authoritatively: cheap raw UDP probes first
        // (kdig waits a whole second after an ICMP refusal), then a kdig confirmation.
        let kdig = try E2E.requireTool("kdig", package: "knot-dnsutils")
        let deadline = Date().addingTimeInterval(10)
        var pending = Set(zones.keys)
        while !pending.isEmpty {
            guard child.isRunning else {
                throw E2EError("knotd \(name) exited during start-up:\n\(E2E.tail(child.log))")
            }
            guard Date() < deadline else {
                stop()
                throw E2EError("knotd \(name) did not answer within 10 s on \(endpoint); zones not ready: \(pending.sorted())\n\(E2E.tail(child.log))")
            }
            for zone in pending.sorted() {
                let probe = QueryBuilder(id: UInt16.random(in: 1...0xFFFF), name: zone, type: DNSType.soa).bytes
                if let bytes = try? RawDNS.udp(probe, host: address, port: port, timeout: 0.2),
                   let response = try? DNSResponse(bytes), response.rcode == DNSRcode.noError, response.aa {
                    pending.remove(zone)
                }
            }
            if !pending.isEmpty { Thread.sleep(forTimeInterval: 0.02) }
        }
        let check = try E2E.runCommand(kdig, ["@\(address)", "-p", String(port), zones.keys.sorted()[0], "SOA",
                                              "+retry=0", "+timeout=2", "+noall", "+answer"], timeout: 10)
        guard check.exitStatus == 0, check.output.contains("SOA") else {
            stop()
            throw E2EError("knotd \(name): kdig got no SOA answer:\n\(check.output)\n\(E2E.tail(child.log))")
        }
    }

    deinit { stop() }

    /// SIGTERM (then SIGKILL after 3 s) and removes the temp dir. Idempotent. `kill`: SIGKILL
    /// at once, the way a crashing or OOM-killed kube-dns pod goes.
    @discardableResult
    func stop(kill: Bool = false) -> ChildProcess.Exit {
        let exit = kill ? child.stop(signal: SIGKILL, grace: 3) : child.stop(grace: 3)
        try? FileManager.default.removeItem(at: directory)
        return exit
    }
}

/// Zone data for the stand-ins. Addresses are distinctive per server so a test can
/// tell which server answered.
enum Zones {
    static func soa(_ origin: String) -> String {
        """
        $ORIGIN \(origin).
        $TTL 30
        @ SOA ns.\(origin). hostmaster.\(origin). 1 7200 1800 86400 30
        @ NS ns.\(origin).
        ns A 127.0.0.53

        """
    }

    /// 200-character TXT strings: `count` of them make an RRset of about count*213 bytes.
    static func txtRecords(_ owner: String, count: Int) -> String {
        (0..<count).map { i in
            let chunk = String(repeating: Character(UnicodeScalar(UInt8(97 + i % 26))), count: 196)
            return "\(owner) TXT \"\(String(format: "%03d", i))-\(chunk)\""
        }.joined(separator: "\n") + "\n"
    }

    static let bigTXTCount = 10      // ~2.1 KB: above 1232, needs TCP
    static let mediumTXTCount = 3    // ~650 B: above 512, below 1232

    /// kube-dns stand-in: cluster.local plus the reverse zones of the pod/service CIDRs.
    static let kubeDNS: [String: String] = [
        "cluster.local": soa("cluster.local") + """
        web.prod.svc A 172.21.0.10
        kubernetes.default.svc A 172.21.0.1
        v4only.prod.svc A 172.21.0.20
        dual.prod.svc A 172.21.0.30
        dual.prod.svc AAAA fd00:21::30

        """ + txtRecords("big.prod.svc", count: bigTXTCount) + txtRecords("medium.prod.svc", count: mediumTXTCount),
        "20.172.in-addr.arpa": soa("20.172.in-addr.arpa") + "5.3 PTR 172-20-3-5.prod.pod.cluster.local.\n",
        "21.172.in-addr.arpa": soa("21.172.in-addr.arpa") + "1.0 PTR kubernetes.default.svc.cluster.local.\n",
        "96.10.in-addr.arpa": soa("96.10.in-addr.arpa") + "1.0 PTR first-of-slash12.svc.cluster.local.\n",
        "100.10.in-addr.arpa": soa("100.10.in-addr.arpa") + "1.0 PTR middle-of-slash12.svc.cluster.local.\n",
        "111.10.in-addr.arpa": soa("111.10.in-addr.arpa") + "1.0 PTR last-of-slash12.svc.cluster.local.\n",
        // For --pod-cidr 10.244.0.0/17 (128 zones 0...127.244.10.in-addr.arpa).
        "0.244.10.in-addr.arpa": soa("0.244.10.in-addr.arpa") + "1 PTR first-of-slash17.pod.cluster.local.\n",
        "127.244.10.in-addr.arpa": soa("127.244.10.in-addr.arpa") + "1 PTR last-of-slash17.pod.cluster.local.\n",
        // For --service-cidr fd00:21::/108 (one nibble-aligned ip6.arpa zone).
        ipv6ReverseZone: soa(ipv6ReverseZone) + "0.3.0.0.0 PTR dual.prod.svc.cluster.local.\n",
    ]

    /// The reverse zone of fd00:21::/108: 27 nibbles.
    static let ipv6ReverseZone = "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.2.0.0.0.0.d.f.ip6.arpa"

    /// Public-internet stand-in. It also serves names *inside* the cluster zones and
    /// reverse ranges, with different data, so a misrouted query is visible.
    static let upstream: [String: String] = [
        "example.test": soa("example.test") + """
        www A 198.51.100.10
        cluster.local A 198.51.100.8
        web.prod.svc.cluster.local A 198.51.100.9

        """,
        "local": soa("local") + """
        notcluster A 198.51.100.7
        web.prod.svc.cluster A 198.51.100.66

        """,
        "10.in-addr.arpa": soa("10.in-addr.arpa") + """
        1.0.95 PTR below-slash12.upstream.example.test.
        1.0.96 PTR misrouted.upstream.example.test.
        1.0.100 PTR misrouted.upstream.example.test.
        1.0.111 PTR misrouted.upstream.example.test.
        1.0.112 PTR above-slash12.upstream.example.test.
        1.0.244 PTR misrouted.upstream.example.test.
        1.127.244 PTR misrouted.upstream.example.test.
        1.128.244 PTR above-slash17.upstream.example.test.

        """,
        upstreamIPv6Reverse: soa(upstreamIPv6Reverse) + """
        0.3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.2.0.0.0.0 PTR misrouted.upstream.example.test.
        0.3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.2.0.0.0.0 PTR outside-v6-cidr.upstream.example.test.

        """,
        "172.in-addr.arpa": soa("172.in-addr.arpa") + """
        5.3.20 PTR misrouted.upstream.example.test.
        5.3.22 PTR outside-cidrs.upstream.example.test.

        """,
    ]

    /// IPv6 reverse space: fd00:21::30 (inside fd00:21::/108) and fd00:22::30 (outside).
    static let upstreamIPv6Reverse = "d.f.ip6.arpa"

    /// Target of a `--forward corp.test=...` zone.
    static let corp: [String: String] = [
        "corp.test": soa("corp.test") + "app A 10.1.2.3\n",
    ]
}
