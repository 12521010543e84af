import Foundation

/// One resource record as printed by dig/kdig: `name ttl class type rdata...`.
struct DigRecord: CustomStringConvertible {
    var name: String
    var ttl: Int
    var type: String
    var rdata: String
    var description: String { "\(name) \(ttl) \(type) \(rdata)" }
}

/// The parsed output of one dig or kdig run (`+noall +comments +question +answer +stats`).
struct DigResult: CustomStringConvertible {
    var command: String
    var output: String
    var exitStatus: Int32
    var elapsed: TimeInterval

    /// False when the client got no response at all (timeout, connection refused).
    var gotResponse: Bool { status != nil }
    var status: String?
    var id: Int?
    var flags: Set<String> = []
    var questionName: String?
    var answers: [DigRecord] = []
    var ednsUDPSize: Int?
    /// "UDP" or "TCP": the transport of the response that was printed.
    var transport: String?
    /// The client saw TC=1 over UDP and retried over TCP.
    var retriedOverTCP = false

    var tc: Bool { flags.contains("tc") }
    var addresses: [String] { answers.filter { $0.type == "A" || $0.type == "AAAA" }.map(\.rdata) }
    func rdata(_ type: String) -> [String] { answers.filter { $0.type == type }.map(\.rdata) }

    var description: String { "`\(command)` (exit \(exitStatus), \(String(format: "%.3f", elapsed)) s):\n\(output)" }

    init(command: String, output: String, exitStatus: Int32, elapsed: TimeInterval) {
        self.command = command
        self.output = output
        self.exitStatus = exitStatus
        self.elapsed = elapsed
        parse()
    }

    /// Tolerates both dig (`, ` separators, `flags:`) and kdig (`; ` separators, `Flags:`).
    private mutating func parse() {
        var section = ""
        for rawLine in output.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            let lower = line.lowercased()
            if line.isEmpty { section = ""; continue }
            if lower.contains("truncated, retrying in tcp mode") { retriedOverTCP = true; continue }
            if line.contains("->>HEADER<<-") {
                // A later header (e.g. after a TCP retry) replaces an earlier one.
                status = DigResult.field(line, "status"); id = DigResult.field(line, "id").flatMap { Int($0) }
                flags = []; answers = []; questionName = nil; ednsUDPSize = nil
                continue
            }
            if lower.hasPrefix(";; flags:") {
                let rest = line.dropFirst(";; flags:".count)
                let list = rest.split(separator: ";", maxSplits: 1).first ?? ""
                flags = Set(list.split(separator: " ").map { $0.lowercased() })
                continue
            }
            if lower.hasPrefix("; edns:") || lower.hasPrefix(";; version:") {
                if let udp = DigResult.field(line, "udp") { ednsUDPSize = Int(udp) }
                continue
            }
            if lower.hasPrefix(";; server:") || lower.hasPrefix(";; from ") {
                if lower.contains("(tcp)") { transport = "TCP" } else if lower.contains("(udp)") { transport = "UDP" }
                continue
            }
            if lower.hasPrefix(";; ") && lower.hasSuffix("section:") {
                section = String(lower.dropFirst(3).dropLast("section:".count)).trimmingCharacters(in: .whitespaces)
                continue
            }
            if section == "question", line.hasPrefix(";") {
                let body = line.drop(while: { $0 == ";" || $0 == " " })
                questionName = body.split(whereSeparator: { $0 == " " || $0 == "\t" }).first.map(String.init)
                continue
            }
            if line.hasPrefix(";") { continue }
            if section == "answer" {
                let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
                // name ttl class type rdata...   (class may be absent in some kdig styles)
                guard parts.count >= 4, let ttl = Int(parts[1]) else { continue }
                var index = 2
                if ["IN", "CH", "HS", "ANY"].contains(parts[index].uppercased()) { index += 1 }
                guard index < parts.count else { continue }
                let rdata = parts[(index + 1)...].joined(separator: " ")
                answers.append(DigRecord(name: parts[0], ttl: ttl, type: parts[index].uppercased(), rdata: rdata))
            }
        }
    }

    /// `key: value` with `,` or `;` separators.
    private static func field(_ line: String, _ key: String) -> String? {
        guard let range = line.range(of: key + ":") else { return nil }
        let rest = line[range.upperBound...].trimmingCharacters(in: .whitespaces)
        let value = rest.prefix(while: { $0 != "," && $0 != ";" && $0 != " " })
        return value.isEmpty ? nil : String(value)
    }
}

enum Dig {
    /// Runs `dig` (which, unlike kdig, keeps the query name's case) with one try and a
    /// short timeout. `options` are extra dig options such as `+tcp`, `+ignore`, `+noedns`.
    static func query(_ name: String, _ type: String = "A", server: String = "127.0.0.1", port: UInt16,
                      options: [String] = [], timeoutSeconds: Int = 5) throws -> DigResult {
        let dig = try E2E.requireTool("dig", package: "bind9-dnsutils")
        var arguments = ["@\(server)", "-p", String(port)]
        if server.contains(":") { arguments.append("-6") }
        arguments += [name, type, "+noall", "+comments", "+question", "+answer", "+stats",
                      "+tries=1", "+time=\(timeoutSeconds)"] + options
        let result = try E2E.runCommand(dig, arguments, timeout: Double(timeoutSeconds * 3 + 5))
        return DigResult(command: "dig " + arguments.joined(separator: " "), output: result.output,
                         exitStatus: result.exitStatus, elapsed: result.elapsed)
    }

    /// Runs `kdig` the same way (full output so the header is printed).
    static func kdig(_ name: String, _ type: String = "A", server: String = "127.0.0.1", port: UInt16,
                     options: [String] = [], timeoutSeconds: Int = 5) throws -> DigResult {
        let kdig = try E2E.requireTool("kdig", package: "knot-dnsutils")
        var arguments = ["@\(server)", "-p", String(port), name, type, "+retry=0", "+timeout=\(timeoutSeconds)"] + options
        if server.contains(":") { arguments.insert("-6", at: 0) }
        let result = try E2E.runCommand(kdig, arguments, timeout: Double(timeoutSeconds * 3 + 5))
        return DigResult(command: "kdig " + arguments.joined(separator: " "), output: result.output,
                         exitStatus: result.exitStatus, elapsed: result.elapsed)
    }
}
