import ArgumentParser
import Glibc
import KubebridgeConfig
import NetAddress
import RouteHelper

/// `kubebridge routes`: the gateway node's IP forwarding and owned static routes, and route
/// announcements for the rest of the office.
struct RoutesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "routes",
        abstract: "Route the office to pod and service IPs through this node, and tell the office how to reach it.",
        discussion: """
        Routes are installed over rtnetlink with route protocol \(RouteProtocol.name) (\(RouteProtocol.kubebridge)); \
        kubebridge never replaces or deletes a route it did not create. Exit status: 0 ok, 1 failure, \
        3 a conflicting route (nothing changed; see --adopt), 4 a gateway check error (nothing changed), \
        64 bad usage or configuration.
        """,
        subcommands: [RoutesPlan.self, RoutesApply.self, RoutesShow.self, RoutesWithdraw.self, RoutesAnnounce.self])
}

/// Flags shared by plan/apply/show/withdraw, spelled like the `[routes]` keys.
struct RouteOptions: ParsableArguments {
    @Option(name: .long, help: "Configuration file (TOML); its [routes] section. Flags override it.")
    var config: String?
    @Option(name: .customLong("pod-cidr"), help: "Pod network to route (repeatable).")
    var podCIDR: [String] = []
    @Option(name: .customLong("service-cidr"), help: "Service network to route (repeatable).")
    var serviceCIDR: [String] = []
    @Option(name: .long, help: "Next hop for the pod/service CIDRs, e.g. a cluster node (one per IP family).")
    var via: [String] = []
    @Option(name: .long, help: "Interface the routes leave through.")
    var dev: String?
    @Option(name: .long, help: "Routing table, a number or 'main' (default main).")
    var table: String?
    @Option(name: .customLong("node-route"), help: "Per-node route CIDR=ADDR, e.g. 172.20.3.0/24=192.168.2.83 (repeatable).")
    var nodeRoute: [String] = []
    @Option(name: .customLong("sysctl-dir"), help: "Where the forwarding drop-in goes (default /etc/sysctl.d).")
    var sysctlDir: String?
    @Option(name: .customLong("state-dir"), help: "Where kubebridge records what it turned on (default /var/lib/kubebridge).")
    var stateDir: String?
    @Flag(name: .long, help: "Take over existing routes to the configured prefixes that kubebridge did not create.")
    var adopt = false
    @Flag(name: .long, help: "apply only: keep running and re-apply when the routes disappear.")
    var watch = false

    /// Loads the file's [routes] table (if any) and overlays the flags.
    func settings() throws -> RoutesSettings {
        try RouteFlags(config: config, podCIDR: podCIDR, serviceCIDR: serviceCIDR, via: via, dev: dev, table: table,
                       nodeRoute: nodeRoute, sysctlDir: sysctlDir, stateDir: stateDir, adopt: adopt).settings()
    }

    func configuration() throws -> RoutesConfiguration {
        let s = try settings()
        var c = RoutesConfiguration()
        c.podCIDRs = s.podCIDRs
        c.serviceCIDRs = s.serviceCIDRs
        c.via = s.via
        c.device = s.dev
        if let t = s.table { c.table = t }
        c.nodeRoutes = s.nodeRoutes.map { NodeRoute(destination: $0.destination, node: $0.node) }
        if let d = s.sysctlDir { c.sysctlDirectory = d }
        if let d = s.stateDir { c.stateDirectory = d }
        c.adopt = s.adopt ?? false
        return c
    }
}

private func usage(_ message: String) -> ValidationError { ValidationError(message) }

/// The flag values as plain data, merged over the config file's [routes] table.
struct RouteFlags {
    var config: String?
    var podCIDR: [String] = []
    var serviceCIDR: [String] = []
    var via: [String] = []
    var dev: String?
    var table: String?
    var nodeRoute: [String] = []
    var sysctlDir: String?
    var stateDir: String?
    var adopt = false

    func settings() throws -> RoutesSettings {
        var s = RoutesSettings()
        if let path = config {
            let text: String
            do { text = try ConfigFile.read(path) } catch { throw usage("\(error)") }
            let (doc, syntax) = ConfigDocument.parse(text, file: path)
            let diags = syntax + s.apply(doc)
            if !diags.isEmpty { throw usage(diags.map(\.description).joined(separator: "\n")) }
        }
        var problems: [String] = []
        func each<T>(_ flag: String, _ values: [String], _ parse: (String) throws -> T) -> [T]? {
            if values.isEmpty { return nil }
            var out: [T] = []
            for v in values {
                do { out.append(try parse(v)) } catch { problems.append("--\(flag): \(error)") }
            }
            return out
        }
        func address(_ v: String) throws -> IPAddress {
            guard let a = IPAddress(v) else { throw SettingError("'\(v)' is not an IP address") }
            return a
        }
        if let v = each("pod-cidr", podCIDR, { try CIDR(parsing: $0) }) { s.podCIDRs = v }
        if let v = each("service-cidr", serviceCIDR, { try CIDR(parsing: $0) }) { s.serviceCIDRs = v }
        if let v = each("via", via, address) { s.via = v }
        if let d = dev { s.dev = d }
        if let t = table {
            if let n = RoutesSettings.parseTable(t) { s.table = n } else {
                problems.append("--table: '\(t)' is not a routing table number (1-4294967295, not 255) or 'main'")
            }
        }
        if let v = each("node-route", nodeRoute, { try RoutesSettings.NodeRoute(parsing: $0) }) { s.nodeRoutes = v }
        if let d = sysctlDir { s.sysctlDir = d }
        if let d = stateDir { s.stateDir = d }
        if adopt { s.adopt = true }
        if !problems.isEmpty { throw usage(problems.joined(separator: "\n")) }
        return s
    }
}

struct RoutesPlan: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan", abstract: "Print what apply would change (sysctls, routes, conflicts, checks); change nothing.")
    @OptionGroup var options: RouteOptions

    func validate() throws {
        if options.watch { throw ValidationError("--watch only works with 'routes apply'") }
    }

    func run() throws {
        let c = try options.configuration()
        try RouteHelperCLI.run { () throws(RouteError) in try RouteManager(configuration: c).plan() }
    }
}

struct RoutesApply: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Turn on forwarding (now and in sysctl.d) and install the routes; idempotent. --watch keeps them in place.")
    @OptionGroup var options: RouteOptions

    func run() throws {
        let c = try options.configuration()
        let manager = RouteManager(configuration: c)
        guard options.watch else {
            try RouteHelperCLI.run { () throws(RouteError) in try manager.apply() }
            return
        }
        signal(SIGTERM) { _ in RouteHelperCLI.stopRequested = 1 }
        signal(SIGINT) { _ in RouteHelperCLI.stopRequested = 1 }
        signal(SIGPIPE, SIG_IGN)
        setvbuf(stdout, nil, _IOLBF, 0)
        let code: Int32
        do {
            code = try manager.watch(shouldStop: { RouteHelperCLI.stopRequested != 0 }, log: { print($0) })
        } catch {
            fputs("kubebridge: error: \(error)\n", stderr)
            if case .invalidConfiguration = error { throw ExitCode.validationFailure }
            throw ExitCode(RouteExitCode.failure)
        }
        if code != RouteExitCode.ok { throw ExitCode(code) }
    }
}

struct RoutesShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "List the routes kubebridge owns and the state of the forwarding sysctls.")
    @OptionGroup var options: RouteOptions

    func validate() throws {
        if options.watch { throw ValidationError("--watch only works with 'routes apply'") }
    }

    func run() throws {
        let c = try options.configuration()
        try RouteHelperCLI.run { () throws(RouteError) in try RouteManager(configuration: c).show() }
    }
}

struct RoutesWithdraw: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "withdraw",
        abstract: "Delete every route with kubebridge's protocol id; turn forwarding off only if kubebridge turned it on.")
    @OptionGroup var options: RouteOptions

    func validate() throws {
        if options.watch { throw ValidationError("--watch only works with 'routes apply'") }
    }

    func run() throws {
        let c = try options.configuration()
        try RouteHelperCLI.run { () throws(RouteError) in try RouteManager(configuration: c).withdraw() }
    }
}

struct RoutesAnnounce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "announce",
        abstract: "Print ready-to-paste route instructions for office hosts, switches and DHCP servers.")

    @Option(name: .long, help: "Configuration file (TOML); its [routes] section supplies CIDRs and gateways.")
    var config: String?
    @Option(name: .long, help: "The gateway node's office address (one per IP family).")
    var gateway: [String] = []
    @Option(name: .long, help: "windows, powershell, linux, netplan, nmcli, macos, cisco, huawei, dhcp-dnsmasq, dhcp-isc, dhcp-kea or all (default).")
    var format: String = "all"
    @Option(name: .customLong("default-gateway"), help: "The office's usual router; DHCP option 121 must carry it.")
    var defaultGateway: String?
    @Option(name: .customLong("pod-cidr"), help: "Pod network (repeatable).")
    var podCIDR: [String] = []
    @Option(name: .customLong("service-cidr"), help: "Service network (repeatable).")
    var serviceCIDR: [String] = []
    @Option(name: .customLong("node-route"), help: "Per-node route CIDR=ADDR; its CIDR is announced unless a pod CIDR covers it.")
    var nodeRoute: [String] = []

    func run() throws {
        guard let f = RouteAnnouncer.Format(rawValue: format) else {
            throw ValidationError("--format must be one of: " + RouteAnnouncer.Format.allCases.map(\.rawValue).joined(separator: ", "))
        }
        var s = try RouteFlags(config: config, podCIDR: podCIDR, serviceCIDR: serviceCIDR, nodeRoute: nodeRoute).settings()
        if !gateway.isEmpty {
            s.gateway = try gateway.map { g in
                guard let a = IPAddress(g) else { throw ValidationError("--gateway: '\(g)' is not an IP address") }
                return a
            }
        }
        if let d = defaultGateway {
            guard let a = IPAddress(d) else { throw ValidationError("--default-gateway: '\(d)' is not an IP address") }
            s.defaultGateway = a
        }
        guard !s.gateway.isEmpty else { throw ValidationError("--gateway ADDR is required (the gateway node's office address)") }
        let cidrs = s.podCIDRs + s.serviceCIDRs + s.nodeRoutes.map(\.destination)
        guard !cidrs.isEmpty else { throw ValidationError("nothing to announce: give --pod-cidr/--service-cidr (or --config)") }
        let a = RouteAnnouncer(cidrs: cidrs, gateways: s.gateway, defaultGateway: s.defaultGateway).render(f)
        print(a.text, terminator: "")
        for p in a.problems { fputs("kubebridge: warning: \(p)\n", stderr) }
        if !a.problems.isEmpty && f != .all { throw ExitCode.validationFailure }
    }
}

enum RouteHelperCLI {
    nonisolated(unsafe) static var stopRequested: sig_atomic_t = 0

    static func run(_ body: () throws(RouteError) -> RouteReport) throws {
        let report: RouteReport
        do {
            report = try body()
        } catch {
            fputs("kubebridge: error: \(error)\n", stderr)
            if case .invalidConfiguration = error { throw ExitCode.validationFailure }
            throw ExitCode(RouteExitCode.failure)
        }
        print(report.text, terminator: "")
        for e in report.errors { fputs("kubebridge: \(e)\n", stderr) }
        if report.exitCode != RouteExitCode.ok { throw ExitCode(report.exitCode) }
    }
}
