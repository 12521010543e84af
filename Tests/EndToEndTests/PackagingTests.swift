import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The Debian package from `scripts/build-deb.sh`, installed for real with `dpkg -i` and
/// purged again. Needs root and dpkg (a throwaway machine or CI); skipped otherwise.
///
/// Which package is tested:
/// * `KUBEBRIDGE_DEB=/path/to/kubebridge_….deb`: that one, as built;
/// * `KUBEBRIDGE_TEST_DEB=1`: the script's full release build (swift build -c release, minutes);
/// * otherwise a quick package of the debug binary next to the test bundle
///   (`build-deb.sh --binary … --fast`), so the normal test run stays fast.
final class PackagingTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Every file the package must ship (paths as `dpkg-deb --contents` prints them, without "./").
    static let expectedFiles = [
        "usr/bin/kubebridge",
        "lib/systemd/system/kubebridge-dns.service",
        "lib/systemd/system/kubebridge-routes.service",
        "etc/kubebridge/kubebridge.toml",
        "etc/iproute2/rt_protos.d/kubebridge.conf",
        "usr/share/doc/kubebridge/README.md",
        "usr/share/doc/kubebridge/copyright",
        "usr/share/doc/kubebridge/changelog.gz",
        "usr/share/doc/kubebridge/examples/kubebridge.toml",
        "usr/share/doc/kubebridge/examples/routes.toml",
        "usr/share/doc/kubebridge/examples/nginx-resolver.conf",
        "usr/share/doc/kubebridge/examples/keepalived.conf",
        "usr/share/doc/kubebridge/examples/kubernetes/daemonset.yaml",
        "usr/share/doc/kubebridge/examples/kubernetes/configmap.yaml",
        "usr/share/doc/kubebridge/examples/kubernetes/servicemonitor.yaml",
    ]

    var installed = false
    var workDirectory: URL?

    override func tearDown() {
        if installed, let dpkg = E2E.tool("dpkg") {
            let purge = try? E2E.runCommand(dpkg, ["--purge", "kubebridge"], timeout: 120)
            if purge?.exitStatus != 0 { print("PackagingTests: dpkg --purge kubebridge failed:\n\(purge?.output ?? "")") }
            installed = false
        }
        if let dir = workDirectory { try? FileManager.default.removeItem(at: dir) }
        super.tearDown()
    }

    func run(_ tool: String, _ arguments: [String], timeout: TimeInterval = 60) throws -> E2E.CommandResult {
        guard let path = tool.hasPrefix("/") ? tool : E2E.tool(tool) else { throw E2EError("`\(tool)` not found") }
        return try E2E.runCommand(path, arguments, timeout: timeout)
    }

    /// The .deb under test: given, fully built, or a quick package of the debug binary.
    func package() throws -> URL {
        let env = ProcessInfo.processInfo.environment
        if let given = env["KUBEBRIDGE_DEB"], !given.isEmpty {
            guard FileManager.default.fileExists(atPath: given) else { throw E2EError("KUBEBRIDGE_DEB=\(given) does not exist") }
            return URL(fileURLWithPath: given)
        }
        let out = try E2E.makeTempDirectory("deb")
        workDirectory = out
        let script = Self.repo.appendingPathComponent("scripts/build-deb.sh").path
        let build: E2E.CommandResult
        if env["KUBEBRIDGE_TEST_DEB"] == "1" {
            // SwiftPM locks the scratch directory this test runs from: build elsewhere.
            let bundle = Bundle(for: PackagingTests.self).bundleURL.path
            let scratch = bundle.contains("/.build-pkg/") ? ".build-pkg-test" : ".build-pkg"
            build = try run("bash", [script, "--out", out.path, "--scratch-path", scratch], timeout: 1800)
        } else {
            let binary = KubebridgeProcess.binaryURL()
            guard FileManager.default.isExecutableFile(atPath: binary.path) else {
                throw E2EError("kubebridge binary not found next to the test bundle (\(binary.path)): run `swift build` first")
            }
            build = try run("bash", [script, "--binary", binary.path, "--out", out.path, "--fast"], timeout: 300)
        }
        XCTAssertEqual(build.exitStatus, 0, build.output)
        let debs = (try? FileManager.default.contentsOfDirectory(atPath: out.path))?.filter { $0.hasSuffix(".deb") } ?? []
        guard build.exitStatus == 0, debs.count == 1 else {
            throw E2EError("build-deb.sh made \(debs) in \(out.path):\n\(build.output)")
        }
        return out.appendingPathComponent(debs[0])
    }

    func testPackageInstallsRunsAndPurges() throws {
        guard getuid() == 0 else {
            throw XCTSkip("needs root: the package is installed with dpkg -i and purged (run as root on a throwaway machine or CI)")
        }
        guard E2E.tool("dpkg") != nil, E2E.tool("dpkg-deb") != nil else {
            throw XCTSkip("dpkg/dpkg-deb not found: the packaging test runs on Debian-based systems only")
        }
        let status = try run("dpkg-query", ["-W", "-f=${db:Status-Abbrev}", "kubebridge"])
        if status.exitStatus == 0, !status.output.hasPrefix("un") && !status.output.isEmpty {
            throw XCTSkip("a kubebridge package is already installed (\(status.output.trimmingCharacters(in: .whitespacesAndNewlines))); "
                          + "this test installs and purges its own: run `dpkg --purge kubebridge` first")
        }

        let deb = try package()

        // --info: the control fields.
        let info = try run("dpkg-deb", ["--info", deb.path])
        XCTAssertEqual(info.exitStatus, 0, info.output)
        let arch = try run("dpkg", ["--print-architecture"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(info.output.contains("Package: kubebridge"), info.output)
        XCTAssertTrue(info.output.contains("Architecture: \(arch)"), info.output)
        XCTAssertTrue(info.output.contains("libevent-core-2.1-7"), "Depends must name libevent_core's package:\n\(info.output)")
        XCTAssertTrue(info.output.contains("libc6"), info.output)
        XCTAssertFalse(info.output.contains("swift"), "no Swift runtime package exists to depend on:\n\(info.output)")
        for script in ["postinst", "prerm", "postrm", "conffiles", "md5sums"] {
            XCTAssertTrue(info.output.contains(" \(script) "), "no \(script) in the control area:\n\(info.output)")
        }
        let version = try run("dpkg-deb", ["--field", deb.path, "Version"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertNotNil(version.range(of: #"^[0-9][A-Za-z0-9.+~]*$"#, options: .regularExpression), "version '\(version)'")
        let conffiles = try run("dpkg-deb", ["--info", deb.path, "conffiles"]).output
        XCTAssertEqual(Set(conffiles.split(separator: "\n").map(String.init)),
                       ["/etc/kubebridge/kubebridge.toml", "/etc/iproute2/rt_protos.d/kubebridge.conf"])

        // --contents: every expected file, owned by root, the binary executable.
        let contents = try run("dpkg-deb", ["--contents", deb.path])
        XCTAssertEqual(contents.exitStatus, 0, contents.output)
        var listed: [String: String] = [:]  // path -> "mode owner"
        for line in contents.output.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, let path = fields.last, path.hasPrefix("./") else { continue }
            listed[String(path.dropFirst(2))] = "\(fields[0]) \(fields[1])"
        }
        for file in Self.expectedFiles {
            XCTAssertNotNil(listed[file], "\(file) missing from the package:\n\(contents.output)")
        }
        XCTAssertEqual(listed["usr/bin/kubebridge"], "-rwxr-xr-x root/root")
        XCTAssertEqual(listed["etc/kubebridge/kubebridge.toml"], "-rw-r--r-- root/root")

        // The unit files point at the packaged binary.
        let unit = try run("sh", ["-c", "dpkg-deb --fsys-tarfile '\(deb.path)' | tar -xO ./lib/systemd/system/kubebridge-dns.service"])
        XCTAssertTrue(unit.output.contains("ExecStart=/usr/bin/kubebridge dns --config /etc/kubebridge/kubebridge.toml"), unit.output)
        XCTAssertFalse(unit.output.contains("/usr/local/bin"), unit.output)

        // Install for real. systemd is not PID 1 here: postinst must enable without starting, and not fail.
        let install = try run("dpkg", ["-i", deb.path], timeout: 300)
        installed = true
        XCTAssertEqual(install.exitStatus, 0, install.output)
        let state = try run("dpkg-query", ["-W", "-f=${db:Status-Abbrev}", "kubebridge"])
        XCTAssertTrue(state.output.hasPrefix("ii"), "package state after dpkg -i: \(state.output)")

        let help = try run("/usr/bin/kubebridge", ["--help"])
        XCTAssertEqual(help.exitStatus, 0, help.output)
        XCTAssertTrue(help.output.contains("USAGE: kubebridge"), help.output)

        let check = try run("/usr/bin/kubebridge", ["check", "--config", "/etc/kubebridge/kubebridge.toml"])
        XCTAssertEqual(check.exitStatus, 0, check.output)
        XCTAssertTrue(check.output.contains("/etc/kubebridge/kubebridge.toml: ok"), check.output)

        if E2E.tool("systemd-analyze") != nil {
            for unit in ["kubebridge-dns.service", "kubebridge-routes.service"] {
                let verify = try run("systemd-analyze", ["verify", "/lib/systemd/system/" + unit])
                XCTAssertEqual(verify.exitStatus, 0, "\(unit):\n\(verify.output)")
                XCTAssertFalse(verify.output.contains(unit + ":"), "\(unit):\n\(verify.output)")
            }
        } else {
            print("PackagingTests: systemd-analyze not installed; unit files not verified")
        }

        // postinst enabled the DNS unit (deb-systemd-helper makes the symlink without systemd running).
        let wants = "/etc/systemd/system/multi-user.target.wants/kubebridge-dns.service"
        if E2E.tool("deb-systemd-helper") != nil {
            XCTAssertEqual(try? FileManager.default.destinationOfSymbolicLink(atPath: wants), "/lib/systemd/system/kubebridge-dns.service")
            XCTAssertNil(try? FileManager.default.destinationOfSymbolicLink(
                atPath: "/etc/systemd/system/multi-user.target.wants/kubebridge-routes.service"), "the routes unit must stay disabled")
        }

        // Purge: nothing of the package is left, conffiles and enablement included.
        let purge = try run("dpkg", ["--purge", "kubebridge"], timeout: 120)
        installed = purge.exitStatus != 0
        XCTAssertEqual(purge.exitStatus, 0, purge.output)
        for file in Self.expectedFiles {
            XCTAssertFalse(FileManager.default.fileExists(atPath: "/" + file), "/\(file) is left after dpkg --purge")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/etc/kubebridge"), "/etc/kubebridge is left after dpkg --purge")
        XCTAssertNil(try? FileManager.default.destinationOfSymbolicLink(atPath: wants), "\(wants) is left after dpkg --purge")
        let after = try run("dpkg-query", ["-W", "-f=${db:Status-Abbrev}", "kubebridge"])
        XCTAssertTrue(after.exitStatus != 0 || after.output.hasPrefix("un") || after.output.isEmpty,
                      "package state after purge: \(after.output)")
    }
}
