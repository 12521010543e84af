import NetAddress

/// The `[routes]` table: settings of `kubebridge routes`. Keys are spelled exactly like the
/// flags (`pod-cidr`, `node-route`, …); flags override what the file says. Kept free of the
/// route helper itself so `kubebridge check` can validate a file on any machine.
public struct RoutesSettings: Sendable, Equatable {
    /// A per-node route, `CIDR=ADDRESS` (the host-gw pattern).
    public struct NodeRoute: Sendable, Equatable {
        public let destination: CIDR
        public let node: IPAddress

        public init(destination: CIDR, node: IPAddress) {
            self.destination = destination
            self.node = node
        }

        public init(parsing text: String) throws {
            let parts = text.split(separator: "=", omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw SettingError("'\(text)' is not CIDR=ADDRESS (e.g. 172.20.3.0/24=192.168.2.83)")
            }
            let cidr = try SettingError.wrap { try CIDR(parsing: String(parts[0]).trimmed) }
            guard let node = IPAddress(String(parts[1]).trimmed) else {
                throw SettingError("'\(parts[1])' is not an IP address")
            }
            guard node.family == cidr.address.family else {
                throw SettingError("'\(text)': the node address and the prefix are of different IP families")
            }
            self.init(destination: cidr, node: node)
        }
    }

    public var podCIDRs: [CIDR] = []
    public var serviceCIDRs: [CIDR] = []
    /// At most one per IP family.
    public var via: [IPAddress] = []
    public var dev: String?
    /// Routing table number (names main/default are accepted in the file).
    public var table: UInt32?
    public var nodeRoutes: [NodeRoute] = []
    public var sysctlDir: String?
    public var stateDir: String?
    public var adopt: Bool?
    /// For `routes announce`: the gateway node's office address(es), one per family.
    public var gateway: [IPAddress] = []
    /// For the DHCP formats of `routes announce`: the office's usual router.
    public var defaultGateway: IPAddress?

    public init() {}

    /// Keys of the `[routes]` table, in the order docs and conf/routes.toml list them.
    public static let keys = [
        "pod-cidr", "service-cidr", "via", "dev", "table", "node-route", "sysctl-dir", "state-dir", "adopt",
        "gateway", "default-gateway",
    ]

    /// Parses a table number or one of iproute2's reserved names. 0 ("unspecified") and 255
    /// (the kernel's local table) cannot hold kubebridge's routes.
    public static func parseTable(_ text: String) -> UInt32? {
        switch text {
        case "main": return 254
        case "default": return 253
        default:
            guard let n = UInt32(text), n > 0, n != 255 else { return nil }
            return n
        }
    }

    /// Overlays the `[routes]` table of `document` on these settings; returns every problem.
    public mutating func apply(_ document: ConfigDocument) -> [Diagnostic] {
        var r = SectionReader(document: document, table: "routes")
        func each<T>(_ key: String, _ parse: (String) throws -> T) -> [T]? {
            guard let items = r.strings(key) else { return nil }
            var out: [T] = []
            for (s, line) in items {
                do { out.append(try parse(s)) } catch { r.error(line, "\(key): \(error)") }
            }
            return out
        }
        func address(_ s: String) throws -> IPAddress {
            guard let a = IPAddress(s.trimmed) else { throw SettingError("'\(s)' is not an IP address") }
            return a
        }
        if let v = each("pod-cidr", { s in try SettingError.wrap { try CIDR(parsing: s.trimmed) } }) { podCIDRs = v }
        if let v = each("service-cidr", { s in try SettingError.wrap { try CIDR(parsing: s.trimmed) } }) { serviceCIDRs = v }
        if let v = each("via", address) { via = v }
        if let (v, line) = r.string("dev") {
            if v.isEmpty || v.count > 15 || v.contains("/") || v.contains(" ") {
                r.error(line, "dev: '\(v)' is not a valid interface name")
            } else {
                dev = v
            }
        }
        if let v = r.entry("table") {
            switch v.kind {
            case .integer(let n) where n > 0 && n != 255 && n <= Int(UInt32.max):
                table = UInt32(n)
            case .string(let s) where RoutesSettings.parseTable(s) != nil:
                table = RoutesSettings.parseTable(s)
            default:
                r.error(v.line, "table must be a routing table number (1-4294967295, not 255) or \"main\"")
            }
        }
        if let v = each("node-route", { try NodeRoute(parsing: $0) }) { nodeRoutes = v }
        if let (v, _) = r.string("sysctl-dir") { sysctlDir = v }
        if let (v, _) = r.string("state-dir") { stateDir = v }
        if let v = r.bool("adopt") { adopt = v }
        if let v = each("gateway", address) { gateway = v }
        if let (v, line) = r.string("default-gateway") {
            do { defaultGateway = try address(v) } catch { r.error(line, "default-gateway: \(error)") }
        }
        r.finish()
        return r.diagnostics
    }
}
