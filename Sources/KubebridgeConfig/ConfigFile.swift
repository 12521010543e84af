import Glibc

/// Loading and whole-file validation shared by `kubebridge dns` and `kubebridge check`.
public enum ConfigFile {
    /// Tables kubebridge reads; anything else is reported.
    public static let knownTables = ["", "dns", "routes"]

    /// Keys of `[dns]` that hold lists; in environment variables their items are separated
    /// by spaces or `;` (commas belong to `forward`'s server lists).
    public static let dnsListKeys: Set<String> = ["listen", "cluster-zone", "cluster-dns", "pod-cidr", "service-cidr",
                                                  "upstream", "forward", "allow", "rate-limit-exempt"]

    static let integerKeys: Set<String> = ["threads", "max-udp-size", "max-tcp-connections", "cache-min-ttl", "cache-max-ttl",
                                           "cache-negative-ttl", "cache-servfail-ttl", "stale-ttl", "cache-size", "socket-buffer", "rate-limit", "upstream-sockets"]

    /// The environment variable for a `[dns]` key: `cluster-dns` → `KUBEBRIDGE_CLUSTER_DNS`.
    public static func environmentName(_ key: String) -> String {
        "KUBEBRIDGE_" + key.uppercased().split(separator: "-").joined(separator: "_")
    }

    /// Overlays `KUBEBRIDGE_*` variables on `settings` (for ConfigMap/`envFrom` deployments):
    /// they win over the file and lose to flags. Variables kubebridge does not know are ignored.
    public static func applyEnvironment(_ env: [String: String], to settings: inout DNSSettings) -> [Diagnostic] {
        var diags: [Diagnostic] = []
        for key in DNSSettings.keys {
            let name = environmentName(key)
            guard let raw = env[name] else { continue }
            let value: ConfigValue.Kind
            if dnsListKeys.contains(key) {
                let items = raw.split(whereSeparator: { $0 == " " || $0 == ";" || $0 == "\t" || $0 == "\n" })
                value = .array(items.map { ConfigValue(kind: .string(String($0)), line: 0) })
            } else if integerKeys.contains(key), let n = Int(raw) {
                value = .integer(n)
            } else if raw == "true" || raw == "false" {
                value = .bool(raw == "true")
            } else {
                value = .string(raw)
            }
            let doc = ConfigDocument.single(table: "dns", key: key, value: ConfigValue(kind: value, line: 0), origin: "$" + name)
            diags += settings.apply(doc)
        }
        return diags
    }

    public static func read(_ path: String) throws -> String {
        guard let f = fopen(path, "r") else {
            throw SettingError("\(path): cannot open: \(String(cString: strerror(errno)))")
        }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n <= 0 { break }
            bytes.append(contentsOf: buf[..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Parses `text` and overlays its `[dns]` table on `settings`. Returns all diagnostics:
    /// syntax, unknown tables and keys, and bad values.
    public static func load(_ text: String, file: String, into settings: inout DNSSettings) -> (ConfigDocument, [Diagnostic]) {
        let (doc, syntax) = ConfigDocument.parse(text, file: file)
        var diags = syntax
        for t in doc.tables where !knownTables.contains(t.name) {
            diags.append(Diagnostic(file: file, line: t.line, message: "unknown table [\(t.name)] (kubebridge reads [dns] and [routes])"))
        }
        if let top = doc.table(""), let first = top.entries.first {
            diags.append(Diagnostic(file: file, line: first.value.line,
                                    message: "'\(first.key)' is outside any table; put it under [dns] or [routes]"))
        }
        diags += settings.apply(doc)
        // The [routes] table is checked too, so one `kubebridge check` reports the whole file.
        var routes = RoutesSettings()
        diags += routes.apply(doc)
        return (doc, diags.sorted { $0.line < $1.line })
    }
}
