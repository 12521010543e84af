import Glibc

/// Loading and whole-file validation shared by `kubebridge dns` and `kubebridge check`.
public enum ConfigFile {
    /// Tables kubebridge reads; anything else is reported.
    public static let knownTables = ["", "dns", "routes"]

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
