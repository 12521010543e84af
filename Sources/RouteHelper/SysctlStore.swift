/// A kernel setting under /proc/sys, named the way `sysctl` names it.
struct SysctlKey: Hashable, Sendable, CustomStringConvertible {
    /// Path components below /proc/sys. An interface name is one component even if it
    /// contains dots (`eth0.100`), which is why keys are not stored as dotted strings.
    let components: [String]

    init(_ components: [String]) { self.components = components }

    static let ipv4Forward = SysctlKey(["net", "ipv4", "ip_forward"])
    static let ipv6Forward = SysctlKey(["net", "ipv6", "conf", "all", "forwarding"])

    static func rpFilter(_ interface: String) -> SysctlKey { SysctlKey(["net", "ipv4", "conf", interface, "rp_filter"]) }
    static func acceptRA(_ interface: String) -> SysctlKey { SysctlKey(["net", "ipv6", "conf", interface, "accept_ra"]) }

    /// `sysctl` spelling: dots between components, dots inside a component written as '/'.
    var description: String {
        components.map { $0.replacingCharacter(".", with: "/") }.joined(separator: ".")
    }

    init?(sysctlName: String) {
        let parts = sysctlName.split(separator: ".", omittingEmptySubsequences: false).map { $0.replacingCharacter("/", with: ".") }
        guard !parts.isEmpty, parts.allSatisfy({ !$0.isEmpty && $0 != ".." }) else { return nil }
        components = parts
    }
}

/// Reads and writes sysctls through a root directory, /proc/sys by default. Tests point it
/// at a private directory, and the namespace tests rely on /proc/sys/net being per network
/// namespace, so nothing here can reach the host's settings from a test.
struct SysctlStore {
    let root: String

    init(root: String = "/proc/sys") { self.root = root }

    func path(_ key: SysctlKey) -> String { ([root] + key.components).joined(separator: "/") }

    /// The current value without the trailing newline, or nil when the setting does not exist
    /// (IPv6 disabled, an interface that went away).
    func read(_ key: SysctlKey) throws(SystemError) -> String? {
        guard let bytes = try Sys.readFile(path(key), limit: 4096) else { return nil }
        return String(decoding: bytes, as: UTF8.self).trimmingWhitespace()
    }

    func write(_ key: SysctlKey, _ value: String) throws(SystemError) {
        try Sys.writeExisting(path(key), Array((value + "\n").utf8))
    }

    func readInt(_ key: SysctlKey) -> Int? {
        guard let text = try? read(key) else { return nil }
        return Int(text)
    }
}

/// The sysctl.d drop-in that makes forwarding survive a reboot. kubebridge owns this one
/// file and nothing else in the directory.
struct SysctlDropIn {
    static let fileName = "90-kubebridge-routes.conf"
    let directory: String

    var path: String { directory + "/" + SysctlDropIn.fileName }

    static func contents(_ keys: [SysctlKey]) -> String {
        var text = """
        # Written by `kubebridge routes apply`, removed by `kubebridge routes withdraw`.
        # The office reaches pod and service IPs through this node, so it must forward packets.

        """
        for k in keys { text += "\(k) = 1\n" }
        return text
    }

    /// Writes the drop-in unless it already says exactly this. Returns whether it changed.
    func install(_ keys: [SysctlKey]) throws(SystemError) -> Bool {
        let wanted = Array(SysctlDropIn.contents(keys).utf8)
        if let existing = try Sys.readFile(path), existing == wanted { return false }
        try Sys.makeDirectories(directory)
        try Sys.writeFileAtomically(path, wanted)
        return true
    }

    func isInstalled() -> Bool { (try? Sys.readFile(path)) != nil }

    @discardableResult
    func remove() throws(SystemError) -> Bool { try Sys.removeFile(path) }
}

/// What `apply` changed that `withdraw` must undo: which forwarding switches were off before
/// kubebridge turned them on. Sticky: a second `apply` finds forwarding already on (because
/// of the first) and must not forget that it was kubebridge that turned it on.
struct RouteState: Equatable {
    static let fileName = "routes.state"
    var enabledByKubebridge: [SysctlKey] = []

    static func parse(_ text: String) -> RouteState {
        var s = RouteState()
        for line in text.split(separator: "\n") {
            let t = line.trimmingWhitespace()
            if t.isEmpty || t.hasPrefix("#") { continue }
            let fields = t.split(separator: " ", maxSplits: 1)
            if fields.count == 2, fields[0] == "enabled", let key = SysctlKey(sysctlName: String(fields[1])),
               !s.enabledByKubebridge.contains(key) {
                s.enabledByKubebridge.append(key)
            }
        }
        return s
    }

    func render() -> String {
        var text = "# kubebridge routes: settings `apply` turned on and `withdraw` turns off again. Do not edit.\n"
        for k in enabledByKubebridge { text += "enabled \(k)\n" }
        return text
    }

    static func load(directory: String) throws(SystemError) -> RouteState? {
        guard let bytes = try Sys.readFile(directory + "/" + fileName) else { return nil }
        return parse(String(decoding: bytes, as: UTF8.self))
    }

    func save(directory: String) throws(SystemError) {
        try Sys.makeDirectories(directory)
        try Sys.writeFileAtomically(directory + "/" + RouteState.fileName, Array(render().utf8), mode: 0o600)
    }

    static func remove(directory: String) throws(SystemError) {
        try Sys.removeFile(directory + "/" + fileName)
    }
}

/// Small string helpers, kept here so the route helper does not pull in Foundation (and
/// named so they cannot collide with Foundation's in code that imports both).
extension StringProtocol {
    /// Note: "\r\n" is one Character in Swift, so whitespace is tested per Character.
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }

    func replacingCharacter(_ a: Character, with b: Character) -> String {
        String(map { $0 == a ? b : $0 })
    }
}
