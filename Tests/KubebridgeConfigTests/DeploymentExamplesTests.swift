import XCTest
@testable import KubebridgeConfig

/// The deployment examples in conf/ (Kubernetes ConfigMap, the Debian package's default
/// configuration) hold kubebridge configuration too: it must load without a diagnostic.
final class DeploymentExamplesTests: XCTestCase {
    static let repo = ConfigTests.repo

    func text(_ relative: String) throws -> String {
        try ConfigFile.read(Self.repo.appendingPathComponent(relative).path)
    }

    func load(_ text: String, file: String) -> (DNSSettings, [Diagnostic]) {
        var s = DNSSettings()
        let (_, d) = ConfigFile.load(text, file: file, into: &s)
        return (s, d)
    }

    static func indentation(_ line: Substring) -> Int { line.prefix { $0 == " " }.count }

    /// The block scalar after `key: |` (or `|-`): the following lines indented deeper than
    /// the key, with the block's own indentation removed; blank lines are kept. Returns nil
    /// when the key is not there. Enough YAML for a ConfigMap, no YAML library.
    static func blockScalar(_ key: String, in yaml: String) -> String? {
        let lines = yaml.split(separator: "\n", omittingEmptySubsequences: false)
        guard let start = lines.firstIndex(where: {
            let t = $0.trimmingCharacters(in: .whitespaces)
            return t == "\(key): |" || t == "\(key): |-"
        }) else { return nil }
        let keyIndent = indentation(lines[start])
        var body: [Substring] = []
        for line in lines[(start + 1)...] {
            if line.allSatisfy({ $0 == " " }) { body.append(""); continue }
            if indentation(line) <= keyIndent { break }
            body.append(line)
        }
        while body.last == "" { body.removeLast() }
        guard let first = body.first(where: { !$0.isEmpty }) else { return "" }
        let blockIndent = indentation(first)
        return body.map { $0.isEmpty ? "" : String($0.dropFirst(min(blockIndent, indentation($0)))) }
            .joined(separator: "\n") + "\n"
    }

    /// `KEY: "value"` pairs of the ConfigMap named `name` (flat string data only).
    static func dataPairs(ofConfigMap name: String, in yaml: String) -> [String: String] {
        guard let doc = yaml.components(separatedBy: "\n---").first(where: { $0.contains("name: \(name)\n") }),
              let data = doc.range(of: "\ndata:\n") else { return [:] }
        var out: [String: String] = [:]
        for line in doc[data.upperBound...].split(separator: "\n") {
            if Self.indentation(line) == 0 { break }
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.hasPrefix("#") { continue }
            guard let colon = t.firstIndex(of: ":") else { continue }
            var value = t[t.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
            out[String(t[..<colon])] = value
        }
        return out
    }

    func testBlockScalarExtraction() {
        let yaml = """
        data:
          other: x
          kubebridge.toml: |
            [dns]

            listen = ["0.0.0.0:53"]
              # deeper
          next: y
        """
        XCTAssertEqual(Self.blockScalar("kubebridge.toml", in: yaml), "[dns]\n\nlisten = [\"0.0.0.0:53\"]\n  # deeper\n")
        XCTAssertNil(Self.blockScalar("missing.toml", in: yaml))
    }

    func testKubernetesConfigMapTOMLLoadsCleanly() throws {
        let path = "conf/kubernetes/configmap.yaml"
        let toml = try XCTUnwrap(Self.blockScalar("kubebridge.toml", in: try text(path)), "no `kubebridge.toml: |` in \(path)")
        XCTAssertTrue(toml.hasPrefix("[dns]\n"), toml)
        let (s, d) = load(toml, file: path + "#kubebridge.toml")
        XCTAssertEqual(d, [])
        XCTAssertEqual(s.listen.map(\.description), ["0.0.0.0:53"])
        XCTAssertNotNil(s.admin, "the probes and the ServiceMonitor need the admin listener")
        XCTAssertFalse(s.upstream.isEmpty, "with ClusterFirstWithHostNet, resolv.conf names kube-dns: upstream must be set")
        XCTAssertNoThrow(try s.makePlan(resolvConfText: nil))
    }

    /// Every variable of the env ConfigMap is a real KUBEBRIDGE_* name and applies cleanly.
    func testKubernetesEnvironmentOverridesAreKnownKeys() throws {
        let env = Self.dataPairs(ofConfigMap: "kubebridge-env", in: try text("conf/kubernetes/configmap.yaml"))
        XCTAssertFalse(env.isEmpty)
        let known = Set(DNSSettings.keys.map(ConfigFile.environmentName))
        for name in env.keys { XCTAssertTrue(known.contains(name), "\(name) is not a kubebridge variable") }
        var s = DNSSettings()
        XCTAssertEqual(ConfigFile.applyEnvironment(env, to: &s), [])
        XCTAssertEqual(s.upstream.map(\.description), ["1.1.1.1:53", "9.9.9.9:53"])
        // The DaemonSet's own override, after Kubernetes expands $(HOST_IP).
        XCTAssertEqual(ConfigFile.applyEnvironment(["KUBEBRIDGE_ADMIN": "192.168.1.95:9153"], to: &s), [])
        XCTAssertEqual(s.admin?.description, "192.168.1.95:9153")
    }

    /// The Debian package's /etc/kubebridge/kubebridge.toml: loopback only, no diagnostics.
    func testPackagedDefaultConfigIsLoopbackOnly() throws {
        let path = "packaging/deb/kubebridge.toml"
        let (s, d) = load(try text(path), file: path)
        XCTAssertEqual(d, [])
        XCTAssertFalse(s.listen.isEmpty)
        for e in s.listen { XCTAssertTrue(e.description.hasPrefix("127."), "\(e) is not loopback") }
        XCTAssertTrue(s.admin?.description.hasPrefix("127.") ?? true)
    }
}
