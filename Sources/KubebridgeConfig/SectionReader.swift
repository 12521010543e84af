/// Reads typed settings out of one table, collecting a diagnostic for every key that is
/// missing its type, out of range or unknown, so all problems are reported together.
public struct SectionReader {
    public let file: String
    public let table: ConfigDocument.Table?
    public private(set) var diagnostics: [Diagnostic] = []
    private var used: Set<String> = []

    public init(document: ConfigDocument, table name: String) {
        file = document.file
        table = document.table(name)
    }

    public mutating func error(_ line: Int, _ message: String) {
        diagnostics.append(Diagnostic(file: file, line: line, message: message))
    }

    mutating func entry(_ key: String) -> ConfigValue? {
        used.insert(key)
        return table?.entries.first { $0.key == key }?.value
    }

    /// A string or a list of strings, each with its line.
    public mutating func strings(_ key: String) -> [(String, Int)]? {
        guard let v = entry(key) else { return nil }
        switch v.kind {
        case .string(let s): return [(s, v.line)]
        case .array(let items):
            var out: [(String, Int)] = []
            for it in items {
                guard case .string(let s) = it.kind else {
                    error(it.line, "'\(key)' must be a list of strings, found \(it.typeName)")
                    continue
                }
                out.append((s, it.line))
            }
            return out
        default:
            error(v.line, "'\(key)' must be a string or a list of strings, found \(v.typeName)")
            return nil
        }
    }

    public mutating func string(_ key: String) -> (String, Int)? {
        guard let v = entry(key) else { return nil }
        guard case .string(let s) = v.kind else { error(v.line, "'\(key)' must be a string, found \(v.typeName)"); return nil }
        return (s, v.line)
    }

    public mutating func integer(_ key: String, in range: ClosedRange<Int>) -> Int? {
        guard let v = entry(key) else { return nil }
        guard case .integer(let n) = v.kind else { error(v.line, "'\(key)' must be an integer, found \(v.typeName)"); return nil }
        guard range.contains(n) else {
            error(v.line, "'\(key)' is \(n), outside \(range.lowerBound)...\(range.upperBound)")
            return nil
        }
        return n
    }

    public mutating func bool(_ key: String) -> Bool? {
        guard let v = entry(key) else { return nil }
        guard case .bool(let b) = v.kind else { error(v.line, "'\(key)' must be true or false, found \(v.typeName)"); return nil }
        return b
    }

    /// A duration such as "1500ms", "2s", "5m", "1h" or "1d", in milliseconds.
    public mutating func duration(_ key: String, in range: ClosedRange<UInt64>) -> UInt64? {
        guard let (s, line) = string(key) else { return nil }
        do {
            let ms = try Units.duration(s)
            guard range.contains(ms) else {
                error(line, "'\(key)' is \(s), outside \(Units.formatDuration(range.lowerBound))...\(Units.formatDuration(range.upperBound))")
                return nil
            }
            return ms
        } catch { self.error(line, "'\(key)': \(error)"); return nil }
    }

    /// A size such as "64MiB", "512KiB" or a plain integer of bytes.
    public mutating func size(_ key: String, in range: ClosedRange<Int>) -> Int? {
        guard let v = entry(key) else { return nil }
        let n: Int
        switch v.kind {
        case .integer(let i): n = i
        case .string(let s):
            do { n = try Units.size(s) } catch { self.error(v.line, "'\(key)': \(error)"); return nil }
        default: error(v.line, "'\(key)' must be a size such as \"64MiB\", found \(v.typeName)"); return nil
        }
        guard range.contains(n) else { error(v.line, "'\(key)' is \(n) bytes, outside \(range.lowerBound)...\(range.upperBound)"); return nil }
        return n
    }

    /// Reports every key of the table that nothing read.
    public mutating func finish() {
        guard let t = table else { return }
        let known = used.sorted()
        for e in t.entries where !used.contains(e.key) {
            // The first known key at the smallest distance (one distance per known key).
            var hint: (key: String, distance: Int)?
            for k in known {
                let d = Units.distance(k, e.key)
                if hint == nil || d < hint!.distance { hint = (k, d) }
            }
            let suggestion = hint.map { $0.distance <= 3 ? "; did you mean '\($0.key)'?" : "" } ?? ""
            error(e.value.line, "unknown key '\(e.key)' in [\(t.name)]\(suggestion)")
        }
    }
}

public enum Units {
    public struct UnitError: Error, CustomStringConvertible {
        public let description: String
    }

    /// A duration in milliseconds: `1500ms`, `2s`, `1.5s`, `5m`, `1h`, `1d`, or a plain
    /// number of milliseconds (`1500`), as the timeout flags take it.
    public static func duration(_ s: String) throws -> UInt64 {
        if let n = UInt64(s) { return n }
        let units: [(String, UInt64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        for (u, mult) in units where s.hasSuffix(u) {
            let num = s.dropLast(u.count)
            if u == "s" && num.hasSuffix("m") { continue }
            // Overflow is an error, not a trap: "99999999999999999d", "1e300s".
            if let n = UInt64(num) {
                let (ms, overflow) = n.multipliedReportingOverflow(by: mult)
                if overflow { throw UnitError(description: "'\(s)' is too long a duration") }
                return ms
            }
            if let d = Double(num), d >= 0, d.isFinite {
                let ms = (d * Double(mult)).rounded()
                guard ms < 18_446_744_073_709_551_616.0 else { throw UnitError(description: "'\(s)' is too long a duration") }
                return UInt64(ms)
            }
        }
        throw UnitError(description: "'\(s)' is not a duration (write e.g. 1500ms, 2s, 5m, 1h, 1d, or milliseconds)")
    }

    public static func formatDuration(_ ms: UInt64) -> String {
        if ms % 86_400_000 == 0 && ms > 0 { return "\(ms / 86_400_000)d" }
        if ms % 1000 == 0 { return "\(ms / 1000)s" }
        return "\(ms)ms"
    }

    public static func size(_ s: String) throws -> Int {
        let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("B", 1)]
        for (u, mult) in units where s.hasSuffix(u) {
            if let n = Int(s.dropLast(u.count).trimmingSpaces()), n >= 0 {
                let (bytes, overflow) = n.multipliedReportingOverflow(by: mult)
                if overflow { throw UnitError(description: "'\(s)' is too large a size") }
                return bytes
            }
        }
        if let n = Int(s), n >= 0 { return n }
        throw UnitError(description: "'\(s)' is not a size (write e.g. 64MiB, 512KiB or a number of bytes)")
    }

    /// Edit distance, for "did you mean" hints.
    static func distance(_ a: String, _ b: String) -> Int {
        let x = Array(a), y = Array(b)
        if x.isEmpty { return y.count }
        // Two rows, swapped: no allocation per row (a file of unknown keys costs keys x
        // known keys of these).
        var prev = Array(0...y.count)
        var cur = [Int](repeating: 0, count: y.count + 1)
        for i in 1...x.count {
            cur[0] = i
            for j in 1...max(1, y.count) where !y.isEmpty {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[y.count]
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var s = self
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return s
    }
}
