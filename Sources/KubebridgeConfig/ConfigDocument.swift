/// One problem found in a configuration, printed the way compilers print theirs so
/// editors and sysadmins can jump to it: `file:line: what is wrong`.
public struct Diagnostic: Error, Equatable, CustomStringConvertible, Sendable {
    public let file: String
    public let line: Int
    public let message: String

    public init(file: String, line: Int, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    /// `file:line: message`; settings from an environment variable have no line and read
    /// `$KUBEBRIDGE_THREADS: message`.
    public var description: String { line == 0 ? "\(file): \(message)" : "\(file):\(line): \(message)" }
}

/// Every problem of one file, so a sysadmin fixes them all in one pass.
public struct ConfigErrors: Error, CustomStringConvertible, Sendable {
    public let diagnostics: [Diagnostic]
    public init(diagnostics: [Diagnostic]) { self.diagnostics = diagnostics }
    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}

/// A value from the file with the line it was written on.
public struct ConfigValue: Sendable {
    public enum Kind: Sendable {
        case string(String)
        case integer(Int)
        case bool(Bool)
        case array([ConfigValue])
    }

    public let kind: Kind
    public let line: Int

    public var typeName: String {
        switch kind {
        case .string: return "a string"
        case .integer: return "an integer"
        case .bool: return "true or false"
        case .array: return "a list"
        }
    }
}

/// The parsed file: tables of keys, each with its line. A subset of TOML 1.0 that covers
/// what kubebridge's settings need: `[table]` and `[table.sub]` headers, bare or quoted
/// keys, basic and literal strings, integers, booleans and (multi-line) arrays, `#`
/// comments. Anything outside that subset is reported, never guessed at.
public struct ConfigDocument: Sendable {
    public struct Entry: Sendable {
        public let key: String
        public let value: ConfigValue
    }

    public struct Table: Sendable {
        public let name: String
        public let line: Int
        public internal(set) var entries: [Entry] = []
    }

    public let file: String
    public private(set) var tables: [Table] = []

    public func table(_ name: String) -> Table? { tables.first { $0.name == name } }

    /// A one-key document standing for an environment variable, so it is validated by the
    /// same code as the file and its errors name the variable.
    public static func single(table: String, key: String, value: ConfigValue, origin: String) -> ConfigDocument {
        var doc = ConfigDocument(file: origin)
        var t = Table(name: table, line: 0)
        t.entries.append(Entry(key: key, value: value))
        doc.tables.append(t)
        return doc
    }

    /// Parses `text`; the diagnostics list every syntax error found (parsing continues on
    /// the next line after each one).
    public static func parse(_ text: String, file: String) -> (ConfigDocument, [Diagnostic]) {
        var doc = ConfigDocument(file: file)
        var diags: [Diagnostic] = []
        var current = ""
        doc.tables.append(Table(name: "", line: 0))
        // Split the UTF-8 bytes, not the Characters: "\r\n" is one Character, so splitting the
        // String on "\n" would leave a CRLF file as one long line. (The "\r" before each
        // "\n" is then skipped as white space.)
        let lines = Array(text.utf8).split(separator: 0x0a, omittingEmptySubsequences: false).map { Array($0) }
        var i = 0
        while i < lines.count {
            let lineNo = i + 1
            var p = Parser(lines: lines, row: i, col: 0)
            p.skipSpace()
            if p.atEnd || p.peek == UInt8(ascii: "#") { i += 1; continue }
            do {
                if p.peek == UInt8(ascii: "[") {
                    p.col += 1
                    if p.peek == UInt8(ascii: "[") { throw ParseFailure("arrays of tables ([[...]]) are not supported") }
                    var parts: [String] = []
                    repeat {
                        p.skipSpace()
                        parts.append(try p.key())
                        p.skipSpace()
                    } while p.eat(UInt8(ascii: "."))
                    guard p.eat(UInt8(ascii: "]")) else { throw ParseFailure("expected ']' to close the table header") }
                    try p.endOfLine()
                    let name = parts.joined(separator: ".")
                    if doc.tables.contains(where: { $0.name == name }) {
                        throw ParseFailure("table [\(name)] is defined twice")
                    }
                    doc.tables.append(Table(name: name, line: lineNo))
                    current = name
                    i += 1
                    continue
                }
                let key = try p.key()
                p.skipSpace()
                if p.peek == UInt8(ascii: ".") { throw ParseFailure("dotted keys are not supported; use a [table] header") }
                guard p.eat(UInt8(ascii: "=")) else { throw ParseFailure("expected '=' after key '\(key)'") }
                p.skipSpace()
                let value = try p.value(line: lineNo)
                try p.endOfLine()
                let t = doc.tables.lastIndex { $0.name == current }!
                if doc.tables[t].entries.contains(where: { $0.key == key }) {
                    throw ParseFailure("key '\(key)' is set twice in \(current.isEmpty ? "the top level" : "[\(current)]")")
                }
                doc.tables[t].entries.append(Entry(key: key, value: value))
                i = p.row + 1
            } catch let f as ParseFailure {
                diags.append(Diagnostic(file: file, line: p.row + 1, message: f.message))
                i = max(i, p.row) + 1
            } catch {
                i += 1
            }
        }
        return (doc, diags)
    }
}

struct ParseFailure: Error {
    let message: String
    init(_ m: String) { message = m }
}

/// A cursor over the file's lines; arrays may span lines, nothing else does.
struct Parser {
    let lines: [[UInt8]]
    var row: Int
    var col: Int

    var line: [UInt8] { lines[row] }
    var atEnd: Bool { col >= line.count }
    var peek: UInt8? { atEnd ? nil : line[col] }

    mutating func skipSpace() {
        while let c = peek, c == 0x20 || c == 0x09 || c == 0x0d { col += 1 }
    }

    mutating func eat(_ c: UInt8) -> Bool {
        if peek == c { col += 1; return true }
        return false
    }

    mutating func endOfLine() throws {
        skipSpace()
        if atEnd || peek == UInt8(ascii: "#") { return }
        throw ParseFailure("unexpected text after the value: '\(String(decoding: line[col...], as: UTF8.self))'")
    }

    /// Skips blanks, comments and line ends (inside arrays).
    mutating func skipBlankLines() throws {
        while true {
            skipSpace()
            if !atEnd && peek != UInt8(ascii: "#") { return }
            guard row + 1 < lines.count else { throw ParseFailure("the list is not closed with ']'") }
            row += 1
            col = 0
        }
    }

    mutating func key() throws -> String {
        if peek == UInt8(ascii: "\"") { return try basicString() }
        if peek == UInt8(ascii: "'") { return try literalString() }
        let start = col
        while let c = peek, (c >= 0x30 && c <= 0x39) || (c | 0x20 >= 0x61 && c | 0x20 <= 0x7a) || c == 0x2d || c == 0x5f {
            col += 1
        }
        guard col > start else { throw ParseFailure("expected a key name") }
        return String(decoding: line[start..<col], as: UTF8.self)
    }

    mutating func value(line lineNo: Int) throws -> ConfigValue {
        guard let c = peek else { throw ParseFailure("missing value after '='") }
        switch c {
        case UInt8(ascii: "\""): return ConfigValue(kind: .string(try basicString()), line: row + 1)
        case UInt8(ascii: "'"): return ConfigValue(kind: .string(try literalString()), line: row + 1)
        case UInt8(ascii: "["):
            let startLine = row + 1
            col += 1
            var items: [ConfigValue] = []
            while true {
                try skipBlankLines()
                if eat(UInt8(ascii: "]")) { break }
                let v = try value(line: row + 1)
                if case .array = v.kind { throw ParseFailure("nested lists are not supported") }
                items.append(v)
                try skipBlankLines()
                if eat(UInt8(ascii: ",")) { continue }
                if eat(UInt8(ascii: "]")) { break }
                throw ParseFailure("expected ',' or ']' in the list")
            }
            return ConfigValue(kind: .array(items), line: startLine)
        default:
            let start = col
            while let c = peek, c != 0x20, c != 0x09, c != 0x0d, c != UInt8(ascii: ","), c != UInt8(ascii: "]"), c != UInt8(ascii: "#") {
                col += 1
            }
            let word = String(decoding: line[start..<col], as: UTF8.self)
            if word == "true" { return ConfigValue(kind: .bool(true), line: row + 1) }
            if word == "false" { return ConfigValue(kind: .bool(false), line: row + 1) }
            let digits = word.replacingOccurrences(of: "_", with: "")
            if let n = Int(digits), !word.hasPrefix("_"), !word.hasSuffix("_") { return ConfigValue(kind: .integer(n), line: row + 1) }
            throw ParseFailure("'\(word)' is not a value (strings need quotes: \"\(word)\")")
        }
    }

    mutating func basicString() throws -> String {
        col += 1
        var out: [UInt8] = []
        while let c = peek {
            col += 1
            if c == UInt8(ascii: "\"") { return String(decoding: out, as: UTF8.self) }
            if c == UInt8(ascii: "\\") {
                guard let e = peek else { break }
                col += 1
                switch e {
                case UInt8(ascii: "\""): out.append(e)
                case UInt8(ascii: "\\"): out.append(e)
                case UInt8(ascii: "n"): out.append(0x0a)
                case UInt8(ascii: "t"): out.append(0x09)
                default: throw ParseFailure("unknown escape '\\\(String(UnicodeScalar(e)))' in string")
                }
                continue
            }
            out.append(c)
        }
        throw ParseFailure("string is not closed with '\"' on the same line")
    }

    mutating func literalString() throws -> String {
        col += 1
        let start = col
        while let c = peek {
            col += 1
            if c == UInt8(ascii: "'") { return String(decoding: line[start..<(col - 1)], as: UTF8.self) }
        }
        throw ParseFailure("string is not closed with \"'\" on the same line")
    }
}

extension String {
    func replacingOccurrences(of a: String, with b: String) -> String {
        split(separator: Character(a), omittingEmptySubsequences: false).joined(separator: b)
    }
}
