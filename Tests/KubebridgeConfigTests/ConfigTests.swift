import XCTest
import NetAddress
import Forwarding
@testable import KubebridgeConfig

final class ConfigTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func load(_ text: String, file: String = "test.toml") -> (DNSSettings, [Diagnostic]) {
        var s = DNSSettings()
        let (_, d) = ConfigFile.load(text, file: file, into: &s)
        return (s, d)
    }

    func testAnnotatedExampleParsesAndCompiles() throws {
        let path = Self.repo.appendingPathComponent("conf/kubebridge.toml").path
        let (s, d) = load(try ConfigFile.read(path), file: path)
        XCTAssertEqual(d, [])
        XCTAssertEqual(s.listen.map(\.description), ["192.168.1.97:53", "127.0.0.1:53"])
        XCTAssertEqual(s.clusterDNS.map(\.description), ["10.96.0.10:53"])
        XCTAssertEqual(s.forward, [ForwardZone(zone: "corp.example", servers: [try Endpoint(parsing: "192.168.1.10"), try Endpoint(parsing: "192.168.1.11")])])
        XCTAssertEqual(s.upstreamTimeoutMs, 1500)
        XCTAssertEqual(s.cacheSize, 64 << 20)
        let plan = try s.makePlan(resolvConfText: nil)
        XCTAssertEqual(plan.router.route(text: "tomcat.dac-prod.svc.cluster.local"), 1)
        XCTAssertEqual(plan.router.route(text: "dc1.corp.example"), 2)
        XCTAssertEqual(plan.router.route(text: "4.3.21.172.in-addr.arpa"), 1)
        XCTAssertEqual(plan.router.route(text: "www.example.com"), 0)
    }

    /// Every configuration example shipped in conf/ loads without a single diagnostic.
    func testEveryShippedExampleParses() throws {
        let conf = Self.repo.appendingPathComponent("conf")
        let files = try FileManager.default.contentsOfDirectory(atPath: conf.path).filter { $0.hasSuffix(".toml") }
        XCTAssertGreaterThanOrEqual(files.count, 2)
        for f in files {
            let path = conf.appendingPathComponent(f).path
            XCTAssertEqual(load(try ConfigFile.read(path), file: path).1, [], f)
        }
    }

    func testRoutesSectionIsCheckedToo() {
        let (_, d) = load("[routes]\npod-cidr = \"172.20.0.0/33\"\nfoo = 1\n")
        XCTAssertEqual(d.map(\.line), [2, 3], "\(d)")
    }

    /// Every ```toml block of the README is a valid configuration.
    func testReadmeExamplesParse() throws {
        let readme = try String(contentsOf: Self.repo.appendingPathComponent("README.md"), encoding: .utf8)
        let blocks = readme.components(separatedBy: "```toml\n").dropFirst().map { $0.components(separatedBy: "```")[0] }
        XCTAssertGreaterThan(blocks.count, 0)
        for (i, b) in blocks.enumerated() {
            XCTAssertEqual(load(b, file: "README.md#\(i)").1, [], b)
        }
    }

    func testAllErrorsReportedWithLines() {
        let text = """
        [dns]
        listen = "127.0.0.1:99999"
        cluster-dns = 10.96.0.10
        pod-cidr = ["172.20.1.0/16"]
        threads = "four"
        clustr-zone = "cluster.local"
        upstream-timeout = "soon"

        [dsn]
        """
        let (_, d) = load(text, file: "/etc/kubebridge/kubebridge.toml")
        let lines = d.map(\.description)
        XCTAssertEqual(lines.count, 7, lines.joined(separator: "\n"))
        XCTAssertTrue(lines[0].hasPrefix("/etc/kubebridge/kubebridge.toml:2: listen: "), lines[0])
        XCTAssertTrue(lines[1].hasPrefix("/etc/kubebridge/kubebridge.toml:3: '10.96.0.10' is not a value"), lines[1])
        XCTAssertEqual(lines[2], "/etc/kubebridge/kubebridge.toml:4: pod-cidr: '172.20.1.0/16' has host bits set; did you mean 172.20.0.0/16?")
        XCTAssertEqual(lines[3], "/etc/kubebridge/kubebridge.toml:5: 'threads' must be an integer, found a string")
        XCTAssertEqual(lines[4], "/etc/kubebridge/kubebridge.toml:6: unknown key 'clustr-zone' in [dns]; did you mean 'cluster-zone'?")
        XCTAssertTrue(lines[5].hasPrefix("/etc/kubebridge/kubebridge.toml:7: 'upstream-timeout': 'soon' is not a duration"), lines[5])
        XCTAssertEqual(lines[6], "/etc/kubebridge/kubebridge.toml:9: unknown table [dsn] (kubebridge reads [dns] and [routes])")
    }

    func testSyntaxErrors() {
        let (_, d) = load("[dns]\nlisten = [\"127.0.0.1\",\n  \"::1\"\nthreads = 2\nx = 'open\n[dns]\n")
        XCTAssertTrue(d.contains { $0.line == 4 && $0.message.contains("expected ',' or ']'") }, "\(d)")
        XCTAssertTrue(d.contains { $0.line == 5 && $0.message.contains("not closed") }, "\(d)")
        XCTAssertTrue(d.contains { $0.line == 6 && $0.message.contains("defined twice") }, "\(d)")
    }

    func testMultilineListsCommentsAndEscapes() {
        let (s, d) = load("""
        # comment
        [dns]
        listen = [
          "127.0.0.1:5353",   # loopback
          "[::1]:5353",
        ]
        cluster-zone = "cluster.local" # trailing comment
        cache-size = 1_048_576
        """)
        XCTAssertEqual(d, [])
        XCTAssertEqual(s.listen.count, 2)
        XCTAssertEqual(s.cacheSize, 1 << 20)
    }

    func testResolvConfExcludesOurselves() throws {
        let text = "# comment\nsearch corp.example\nnameserver 127.0.0.1\nnameserver 192.168.1.1\nnameserver fe80::1%eth0\nnameserver 192.168.1.1\n"
        let local = [IPAddress("127.0.0.1")!, IPAddress("192.168.1.97")!]
        let us = [try Endpoint(parsing: "0.0.0.0:53")]
        XCTAssertEqual(DNSSettings.nameservers(resolvConf: text, excluding: us, localAddresses: local).map(\.description),
                       ["192.168.1.1:53", "[fe80::1]:53"])
        let office = [try Endpoint(parsing: "192.168.1.1:53")]
        XCTAssertEqual(DNSSettings.nameservers(resolvConf: text, excluding: office, localAddresses: local).map(\.description),
                       ["127.0.0.1:53", "[fe80::1]:53"])
        let other = [try Endpoint(parsing: "127.0.0.1:5353")]
        XCTAssertEqual(DNSSettings.nameservers(resolvConf: text, excluding: other, localAddresses: local).first?.description, "127.0.0.1:53")
    }

    func testPlanWithoutUpstreamsIsAnError() {
        var s = DNSSettings()
        s.listen = [try! Endpoint(parsing: "127.0.0.1:53")]
        XCTAssertThrowsError(try s.makePlan(resolvConfText: "nameserver 127.0.0.1\n", localAddresses: [])) { e in
            XCTAssertTrue("\(e)".contains("no upstream servers"), "\(e)")
        }
    }

    func testDurationsAndSizes() throws {
        XCTAssertEqual(try Units.duration("1500ms"), 1500)
        XCTAssertEqual(try Units.duration("1.5s"), 1500)
        XCTAssertEqual(try Units.duration("5m"), 300_000)
        XCTAssertEqual(try Units.duration("1d"), 86_400_000)
        XCTAssertEqual(try Units.duration("250"), 250, "a plain number is milliseconds")
        XCTAssertThrowsError(try Units.duration("5 parsecs"))
        XCTAssertEqual(try Units.size("64MiB"), 64 << 20)
        XCTAssertEqual(try Units.size("512KiB"), 512 << 10)
        XCTAssertEqual(try Units.size("4096"), 4096)
        XCTAssertThrowsError(try Units.size("lots"))
    }

    func testForwardZoneSyntax() throws {
        let f = try ForwardZone(parsing: "corp.example=192.168.1.10, [fd00::53]:5353")
        XCTAssertEqual(f.servers.map(\.description), ["192.168.1.10:53", "[fd00::53]:5353"])
        XCTAssertThrowsError(try ForwardZone(parsing: "corp.example"))
        XCTAssertThrowsError(try ForwardZone(parsing: "corp..example=1.2.3.4"))
    }
}
