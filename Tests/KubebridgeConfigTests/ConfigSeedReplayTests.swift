import Foundation
import XCTest
@testable import KubebridgeConfig

/// Replays every file of Seeds/ (the FuzzConfig seed corpus and every past fuzzer
/// finding, see Fuzz/README.md) through the same checks as the fuzz target: no trap, every
/// diagnostic on a line of the file, CRLF line ends read like LF ones. Bytes after a NUL
/// are KEY=VALUE environment overrides.
final class ConfigSeedReplayTests: XCTestCase {
    static let seeds = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Seeds")

    struct Outcome {
        var file: [Diagnostic]
        var environment: [Diagnostic]
    }

    func replay(_ bytes: [UInt8], name: String) -> Outcome {
        let split = bytes.firstIndex(of: 0) ?? bytes.count
        let text = String(decoding: bytes[..<split], as: UTF8.self)
        let lines = text.utf8.reduce(1) { $0 + ($1 == 0x0a ? 1 : 0) }
        var settings = DNSSettings()
        let (_, diags) = ConfigFile.load(text, file: name, into: &settings)
        for d in diags { XCTAssertTrue((1...lines).contains(d.line), "\(name): \(d) is outside lines 1...\(lines)") }
        if text.utf8.contains(0x0a) {
            let lf = String(decoding: Array(text.utf8).filter { $0 != 0x0d }, as: UTF8.self)
            let crlf = String(decoding: Array(lf.utf8).flatMap { $0 == 0x0a ? [0x0d, 0x0a] : [$0] }, as: UTF8.self)
            var a = DNSSettings(), b = DNSSettings()
            XCTAssertEqual(ConfigFile.load(lf, file: name, into: &a).1, ConfigFile.load(crlf, file: name, into: &b).1,
                           "\(name): CRLF and LF line ends read differently")
        }
        var env: [String: String] = [:]
        if split < bytes.count {
            for line in String(decoding: bytes[(split + 1)...], as: UTF8.self).split(separator: "\n") {
                let kv = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                if kv.count == 2 { env[String(kv[0])] = String(kv[1]) }
            }
        }
        let envDiags = ConfigFile.applyEnvironment(env, to: &settings)
        for d in envDiags { XCTAssertEqual(d.line, 0, "\(name): \(d)") }
        if diags.isEmpty { _ = try? settings.makePlan(resolvConfText: "nameserver 192.0.2.53\n") }
        return Outcome(file: diags, environment: envDiags)
    }

    func testReplaySeeds() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.seeds.path).filter { $0.hasSuffix(".toml") }.sorted()
        XCTAssertGreaterThanOrEqual(files.count, 7)
        for f in files {
            let o = replay([UInt8](try Data(contentsOf: Self.seeds.appendingPathComponent(f))), name: f)
            if f.hasPrefix("example-") || f.hasPrefix("crlf-") { XCTAssertEqual(o.file, [], f) }
        }
    }

    /// Fuzzer findings: each overflowing value is one diagnostic, not a trap.
    func testOverflowingValuesAreDiagnostics() throws {
        for (f, needle) in [("crash-duration-overflow.toml", "too long a duration"),
                            ("crash-duration-double-overflow.toml", "too long a duration"),
                            ("crash-size-overflow.toml", "too large a size")] {
            let o = replay([UInt8](try Data(contentsOf: Self.seeds.appendingPathComponent(f))), name: f)
            XCTAssertEqual(o.file.count, 1, f)
            XCTAssertEqual(o.file.first?.line, 2, f)
            XCTAssertTrue(o.file.first?.message.contains(needle) == true, "\(f): \(o.file)")
        }
        let env = replay([UInt8](try Data(contentsOf: Self.seeds.appendingPathComponent("crash-env-overflow.toml"))), name: "env")
        XCTAssertEqual(env.file, [])
        XCTAssertEqual(env.environment.count, 3, "\(env.environment)")
    }

    func testCRLFFileReadsLikeLF() throws {
        let o = replay([UInt8](try Data(contentsOf: Self.seeds.appendingPathComponent("crlf-line-ends.toml"))), name: "crlf")
        XCTAssertEqual(o.file, [])
        var s = DNSSettings()
        let text = String(decoding: try Data(contentsOf: Self.seeds.appendingPathComponent("crlf-line-ends.toml")), as: UTF8.self)
        _ = ConfigFile.load(text, file: "crlf", into: &s)
        XCTAssertEqual(s.prefetch, false)
        XCTAssertEqual(s.threads, 2)
        XCTAssertEqual(s.listen.map(\.description), ["127.0.0.1:5353"])
    }
}
