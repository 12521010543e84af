import Foundation
import XCTest

/// Operating kubebridge as systemd and an operator do: the notify protocol, the admin
/// endpoints, reloads that keep the cache, environment overrides, and the unit files.
final class OperationsTests: XCTestCase {
    static let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let repo = here.deletingLastPathComponent().deletingLastPathComponent()

    func runDriver() throws -> [String: Any] {
        let r = try E2E.runCommand(try E2E.python(), [Self.here.appendingPathComponent("Scripts/operations.py").path,
                                                     KubebridgeProcess.binaryURL().path,
                                                     Self.here.appendingPathComponent("Fixtures/fakedns.py").path],
                                   timeout: 90)
        guard let data = r.output.split(separator: "\n").last.map({ Data($0.utf8) }),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw E2EError("operations.py gave no report:\n\(r.output)")
        }
        return json
    }

    func testNotifyAdminReloadAndEnvironment() throws {
        let r = try runDriver()
        let log = r["log"] as? String ?? ""
        // sd_notify
        XCTAssertEqual(r["ready"] as? Bool, true, "no READY=1\n\(log)")
        XCTAssertEqual(r["watchdog"] as? Bool, true, "no WATCHDOG=1 within 2 s with WATCHDOG_USEC=400000")
        XCTAssertEqual((r["first"] as? [String: Any])?["rcode"] as? Int, 0)
        // admin endpoints
        XCTAssertEqual(r["metrics_status"] as? Int, 200)
        let metrics = r["metrics"] as? String ?? ""
        for line in ["kubebridge_queries_total{proto=\"udp\"} 1", "kubebridge_responses_total{rcode=\"NOERROR\"} 1",
                     "kubebridge_cache_misses_total 1", "kubebridge_workers 2", "kubebridge_workers_responding 2",
                     "# TYPE kubebridge_upstream_latency_seconds histogram", "kubebridge_upstream_up{server=\"127.0.0.5:",
                     "kubebridge_cache_capacity_bytes 67108864"] {
            XCTAssertTrue(metrics.contains(line), "metrics lack \(line)\n\(metrics)")
        }
        XCTAssertEqual(r["healthz"] as? Int, 200)
        XCTAssertEqual(r["readyz"] as? Int, 200)
        XCTAssertEqual(r["notfound"] as? Int, 404)
        // reload
        XCTAssertEqual(r["reload_ready"] as? Bool, true)
        let reloadMessages = (r["reload_messages"] as? [String] ?? []).joined(separator: "|")
        XCTAssertTrue(reloadMessages.hasPrefix("RELOADING=1"), reloadMessages)
        XCTAssertEqual((r["corp"] as? [String: Any])?["rcode"] as? Int, 0)
        XCTAssertEqual(r["corp_count"] as? Int, 1, "the new forward zone took effect")
        XCTAssertEqual(r["cached_count_after_reload"] as? Int, 1, "the cache survived the reload")
        XCTAssertTrue(log.contains("reloaded configuration"), log)
        // a broken reload keeps the old configuration and says where the error is
        XCTAssertEqual(r["corp_count_after_bad"] as? Int, 1, "the broken file did not replace the working one")
        XCTAssertTrue(log.contains("reload failed, keeping the running configuration"), log)
        XCTAssertTrue(log.contains("kubebridge.toml:8: 'max-udp-size' must be an integer, found a string"), log)
        // reloads under load lose nothing
        let load = r["reload_load"] as? [String: Any] ?? [:]
        XCTAssertEqual(load["sent"] as? Int, 3000)
        XCTAssertEqual(load["answered"] as? Int, 3000, "queries lost during reloads: \(load)")
        XCTAssertGreaterThanOrEqual(load["hups"] as? Int ?? 0, 5, "\(load)")
        // shutdown
        XCTAssertEqual(r["exit"] as? Int, 0)
        XCTAssertTrue((r["stop_messages"] as? [String] ?? []).contains { $0.contains("STOPPING=1") })
        // environment and flags
        XCTAssertEqual(r["env_fake_count"] as? Int, 1, "KUBEBRIDGE_UPSTREAM overrides the file")
        XCTAssertEqual(r["flag_fake_count"] as? Int, 1, "--upstream overrides KUBEBRIDGE_UPSTREAM")
        XCTAssertNotEqual(r["bad_env_exit"] as? Int, 0)
        XCTAssertTrue((r["bad_env_stderr"] as? String ?? "").contains("$KUBEBRIDGE_THREADS: 'threads' must be an integer"),
                      r["bad_env_stderr"] as? String ?? "")
    }

    /// The shipped units pass `systemd-analyze verify` and rate at most 2.0 in its
    /// security report (systemd is not PID 1 here; both work on unit files alone).
    func testDNSUnitVerifiesAndIsHardened() throws {
        guard let analyze = E2E.tool("systemd-analyze") else { throw XCTSkip("systemd-analyze not installed") }
        let unit = try String(contentsOf: Self.repo.appendingPathComponent("systemd/kubebridge-dns.service"), encoding: .utf8)
        let dir = try E2E.makeTempDirectory("kb-unit")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("kubebridge-dns.service").path
        try unit.replacingOccurrences(of: "/usr/local/bin/kubebridge", with: KubebridgeProcess.binaryURL().path)
            .write(toFile: path, atomically: true, encoding: .utf8)
        let verify = try E2E.runCommand(analyze, ["verify", path])
        XCTAssertEqual(verify.exitStatus, 0, verify.output)
        XCTAssertFalse(verify.output.contains("kubebridge-dns.service:"), verify.output)
        let security = try E2E.runCommand(analyze, ["security", "--offline=true", path])
        let text = security.output
        guard let range = text.range(of: "Overall exposure level for kubebridge-dns.service: ") else {
            return XCTFail("no exposure level in:\n\(text)")
        }
        let score = Double(text[range.upperBound...].prefix { $0 == "." || $0.isNumber }) ?? 99
        XCTAssertLessThanOrEqual(score, 2.0, text)
        XCTAssertTrue(unit.contains("Type=notify") && unit.contains("WatchdogSec=") && unit.contains("DynamicUser=yes"))
    }
}
