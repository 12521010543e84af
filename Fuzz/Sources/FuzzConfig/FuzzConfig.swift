import FuzzSupport
import KubebridgeConfig

/// The configuration file: arbitrary text through `ConfigFile.load` (TOML subset parser,
/// [dns] and [routes] settings, every value parser) and, when that finds nothing wrong,
/// `makePlan`. Never a crash; every diagnostic names a line of the file (1...lines); the
/// same text with CRLF line ends gives the same diagnostics. Bytes after a NUL are
/// `KEY=VALUE` lines for `applyEnvironment`, whose diagnostics carry line 0.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = size > 0 ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    let split = bytes.firstIndex(of: 0) ?? bytes.count
    let text = String(decoding: bytes[..<split], as: UTF8.self)
    let lines = text.utf8.reduce(1) { $0 + ($1 == 0x0a ? 1 : 0) }
    var settings = DNSSettings()
    let (_, diags) = ConfigFile.load(text, file: "fuzz.toml", into: &settings)
    for d in diags {
        fuzzCheck(d.file == "fuzz.toml" && d.line >= 1 && d.line <= lines,
                  "diagnostic '\(d)' outside lines 1...\(lines) of \(hexString(bytes[..<split]))")
    }
    fuzzCheck(diags.map(\.line) == diags.map(\.line).sorted(), "diagnostics not sorted by line")

    // Windows line ends: the same diagnostics, on the same lines (for one input in four,
    // chosen by its length: parsing twice halves the executions per second).
    if size % 4 == 0 && text.utf8.contains(0x0a) && !text.utf8.contains(0x0d) {
        var crlf = DNSSettings()
        let crlfText = String(decoding: Array(text.utf8).flatMap { $0 == 0x0a ? [0x0d, 0x0a] : [$0] }, as: UTF8.self)
        let (_, d2) = ConfigFile.load(crlfText, file: "fuzz.toml", into: &crlf)
        fuzzCheck(d2.map(\.line) == diags.map(\.line),
                  "CRLF line ends change the diagnostics: \(diags) vs \(d2) for \(hexString(bytes[..<split]))")
    }

    if split < bytes.count {
        var env: [String: String] = [:]
        for line in String(decoding: bytes[(split + 1)...], as: UTF8.self).split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2 else { continue }
            let key = kv[0].hasPrefix("KUBEBRIDGE_") ? String(kv[0]) : ConfigFile.environmentName(String(kv[0]))
            env[key] = String(kv[1])
        }
        for d in ConfigFile.applyEnvironment(env, to: &settings) {
            fuzzCheck(d.line == 0 && d.file.hasPrefix("$KUBEBRIDGE_"), "environment diagnostic '\(d)'")
        }
    }
    if diags.isEmpty {
        _ = try? settings.makePlan(resolvConfText: "nameserver 192.0.2.53\nnameserver 2001:db8::53\n")
    }
    return 0
}
