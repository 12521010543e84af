import ArgumentParser
import EventLoop
import Forwarding
import Glibc
import KubebridgeConfig
import NetAddress

/// Flags of `kubebridge dns`, spelled like the `[dns]` keys. Flags override the file.
struct DNSOptions: ParsableArguments {
    @Option(name: .long, help: "Configuration file (TOML). Without it, the embedded defaults apply.")
    var config: String?
    @Option(name: .long, help: "Address to serve on, ADDR[:PORT] or [V6]:PORT (repeatable; default 127.0.0.1:5353).")
    var listen: [String] = []
    @Option(name: .customLong("cluster-zone"), help: "Zone answered by the cluster DNS (repeatable; default cluster.local).")
    var clusterZone: [String] = []
    @Option(name: .customLong("cluster-dns"), help: "kube-dns/CoreDNS server, ADDR[:PORT] (repeatable; default 10.96.0.10).")
    var clusterDNS: [String] = []
    @Option(name: .customLong("pod-cidr"), help: "Pod network; its reverse zones go to the cluster DNS (repeatable).")
    var podCIDR: [String] = []
    @Option(name: .customLong("service-cidr"), help: "Service network; its reverse zones go to the cluster DNS (repeatable).")
    var serviceCIDR: [String] = []
    @Option(name: .long, help: "Resolver for all other names (repeatable; default: nameservers of /etc/resolv.conf).")
    var upstream: [String] = []
    @Option(name: .long, help: "Extra zone with its own servers: ZONE=ADDR[:PORT][,ADDR[:PORT]...] (repeatable).")
    var forward: [String] = []
    @Option(name: .long, help: "Client prefix allowed to query (repeatable; default loopback and private ranges).")
    var allow: [String] = []
    @Option(name: .long, help: "Worker threads (default: one per core).")
    var threads: Int?
    @Option(name: .customLong("max-udp-size"), help: "Largest UDP answer to clients (default 1232).")
    var maxUDPSize: Int?
    @Option(name: .customLong("upstream-timeout"), help: "Wait per upstream attempt, e.g. 1500ms (default).")
    var upstreamTimeout: String?
    @Option(name: .customLong("query-timeout"), help: "Total wait before SERVFAIL, e.g. 4s (default).")
    var queryTimeout: String?
    @Option(name: .customLong("tcp-idle-timeout"), help: "Close idle client TCP connections after, e.g. 10s (default).")
    var tcpIdleTimeout: String?
    @Option(name: .customLong("max-tcp-connections"), help: "Client TCP connections per worker (default 1024).")
    var maxTCPConnections: Int?
    @Option(name: .customLong("cache-size"), help: "Cache memory, e.g. 64MiB (default).")
    var cacheSize: String?
    @Option(name: .long, help: "Serve /metrics, /healthz and /readyz on ADDR:PORT (off by default; keep it on loopback).")
    var admin: String?
    @Option(name: .customLong("rate-limit"), help: "UDP queries per second per client (IPv4 address or IPv6 /64); 0 = off (default).")
    var rateLimit: Int?
    @Option(name: .customLong("rate-limit-exempt"), help: "Client prefix never rate limited, e.g. an nginx box or proxy (repeatable).")
    var rateLimitExempt: [String] = []
    @Option(name: .customLong("log-level"), help: "error, warning, info (default) or debug.")
    var logLevel: String?
    @Flag(name: .customLong("query-log"), help: "Log every answer on stdout: client, name, type, rcode, origin, server, latency.")
    var queryLog = false

    /// Builds the settings: embedded defaults, then the file, then `KUBEBRIDGE_*`
    /// environment variables, then these flags. Every problem is reported at once.
    func settings() throws -> DNSSettings {
        var s = DNSSettings()
        var diags: [Diagnostic] = []
        if let path = config {
            let text = try ConfigFile.read(path)
            diags += ConfigFile.load(text, file: path, into: &s).1
        }
        diags += ConfigFile.applyEnvironment(ProcessInfoLite.environment, to: &s)
        if !diags.isEmpty { throw ConfigErrors(diagnostics: diags) }
        var problems: [String] = []
        func each<T>(_ flag: String, _ values: [String], _ parse: (String) throws -> T) -> [T]? {
            if values.isEmpty { return nil }
            var out: [T] = []
            for v in values {
                do { out.append(try parse(v)) } catch { problems.append("--\(flag): \(error)") }
            }
            return out
        }
        if let v = each("listen", listen, { try Endpoint(parsing: $0) }) { s.listen = v }
        if let v = each("cluster-zone", clusterZone, { z -> String in _ = try DNSNameCheck.validate(z); return z }) { s.clusterZones = v }
        if let v = each("cluster-dns", clusterDNS, { try Endpoint(parsing: $0) }) { s.clusterDNS = v }
        if let v = each("pod-cidr", podCIDR, { try CIDR(parsing: $0) }) { s.podCIDRs = v }
        if let v = each("service-cidr", serviceCIDR, { try CIDR(parsing: $0) }) { s.serviceCIDRs = v }
        if let v = each("upstream", upstream, { try Endpoint(parsing: $0) }) { s.upstream = v }
        if let v = each("forward", forward, { try ForwardZone(parsing: $0) }) { s.forward = v }
        if let v = each("allow", allow, { try CIDR(parsing: $0) }) { s.allow = v }
        if let t = threads {
            if (0...256).contains(t) { s.threads = t } else { problems.append("--threads: \(t) is outside 0...256") }
        }
        if let m = maxUDPSize {
            if (512...4096).contains(m) { s.maxUDPSize = m } else { problems.append("--max-udp-size: \(m) is outside 512...4096") }
        }
        func duration(_ flag: String, _ v: String?, _ set: (UInt64) -> Void) {
            guard let v else { return }
            do { set(try Units.duration(v)) } catch { problems.append("--\(flag): \(error)") }
        }
        duration("upstream-timeout", upstreamTimeout) { s.upstreamTimeoutMs = $0 }
        duration("query-timeout", queryTimeout) { s.queryTimeoutMs = $0 }
        duration("tcp-idle-timeout", tcpIdleTimeout) { s.tcpIdleTimeoutMs = $0 }
        if let m = maxTCPConnections {
            if m >= 1 { s.maxTCPConnections = m } else { problems.append("--max-tcp-connections: must be at least 1") }
        }
        if let c = cacheSize {
            do { s.cacheSize = try Units.size(c) } catch { problems.append("--cache-size: \(error)") }
        }
        if let a = admin {
            do { s.admin = try Endpoint(parsing: a) } catch { problems.append("--admin: \(error)") }
        }
        if let l = logLevel {
            if Log.Level(name: l) != nil { s.logLevel = l } else { problems.append("--log-level: '\(l)' is not error, warning, info or debug") }
        }
        if queryLog { s.queryLog = true }
        if let r = rateLimit {
            if r >= 0 { s.rateLimit = r } else { problems.append("--rate-limit: must be 0 (off) or more") }
        }
        if let v = each("rate-limit-exempt", rateLimitExempt, { try CIDR(parsing: $0) }) { s.rateLimitExempt = v }
        if !problems.isEmpty { throw ValidationError(problems.joined(separator: "\n")) }
        return s
    }
}

enum DNSNameCheck {
    static func validate(_ zone: String) throws -> String {
        do { _ = try ZoneText.wire(zone) } catch { throw ValidationError("\(error)") }
        return zone
    }
}

struct DNSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dns",
        abstract: "Run the split-forwarding, caching DNS server in the foreground.")

    @OptionGroup var options: DNSOptions

    func run() throws {
        var settings = try options.settings()
        var plan = try makePlan(settings)
        var server = ServerOptions()
        server.listen = settings.listen
        server.threads = settings.threads > 0 ? settings.threads : max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        server.tcpIdleTimeoutMs = Int(settings.tcpIdleTimeoutMs)
        server.maxTCPConnections = settings.maxTCPConnections
        server.socketBufferBytes = Int32(settings.socketBuffer)
        server.queryLog = settings.queryLog
        server.upstreamSockets = settings.upstreamSockets
        if settings.queryLog { setvbuf(stdout, nil, _IOLBF, 0) }   // one line at a time into journald
        Log.level = Log.Level(name: settings.logLevel) ?? .info
        SignalWaiter.blockSignals()
        let dns: DNSServer
        var adminServer: AdminServer?
        do {
            dns = try DNSServer(options: server, plan: plan, cacheBytes: settings.cacheSize)
            try dns.start()
            if let a = settings.admin {
                let admin = try AdminServer(endpoint: a, dns: dns)
                try admin.start()
                adminServer = admin
            }
        } catch {
            Log.error("cannot start: \(error)")
            throw ExitCode(1)
        }
        // Ready once every worker's loop is running (its sockets were bound before).
        for _ in 0..<500 where !dns.loopsTurning(withinMs: 1000) { usleep(2000) }
        let addrs = settings.listen.map(\.description).joined(separator: ", ")
        Log.info("listening on \(addrs) (udp+tcp), \(server.threads) worker(s), cache \(settings.cacheSize >> 20) MiB"
                 + (settings.admin.map { ", admin on http://\($0)/metrics" } ?? "") + "; zones: "
                 + plan.zoneSummary.joined(separator: "; "))
        SystemdNotify.send("READY=1\nSTATUS=answering on \(addrs)")
        // Ping the watchdog at half its interval, and only while every loop is turning.
        let watchdogMs = SystemdNotify.watchdogMicroseconds.map { Int($0 / 2000) }
        while true {
            guard let signal = SignalWaiter.wait(timeoutMs: watchdogMs) else {
                if dns.loopsTurning(withinMs: UInt64(watchdogMs ?? 1000)) { SystemdNotify.send("WATCHDOG=1") }
                continue
            }
            switch signal {
            case .terminate:
                SystemdNotify.send("STOPPING=1")
                Log.info("stopping")
                adminServer?.stop()
                dns.stop()
                let c = dns.counters
                Log.info("served \(c.queriesUDP) udp and \(c.queriesTCP) tcp queries, \(c.cacheHits) from cache")
                return
            case .reload:
                SystemdNotify.send("RELOADING=1")
                do {
                    let next = try options.settings()
                    let nextPlan = try makePlan(next)
                    for note in DNSCommand.restartOnlyChanges(from: settings, to: next) {
                        Log.info("reload: \(note) needs a restart; keeping the running value")
                    }
                    dns.install(nextPlan)
                    Log.level = Log.Level(name: next.logLevel) ?? .info
                    plan = nextPlan
                    settings = next
                    Log.info("reloaded configuration; zones: " + plan.zoneSummary.joined(separator: "; "))
                } catch {
                    Log.error("reload failed, keeping the running configuration:\n\(error)")
                }
                SystemdNotify.send("READY=1")
            }
        }
    }

    func makePlan(_ settings: DNSSettings) throws -> ForwardingPlan {
        let resolv = try? ConfigFile.read(settings.resolvConf)
        do { return try settings.makePlan(resolvConfText: resolv, localAddresses: LocalInterfaces.addresses()) } catch {
            throw ValidationError("\(error)")
        }
    }

    /// Settings a reload cannot change: sockets, threads and the cache's size are fixed at start.
    static func restartOnlyChanges(from a: DNSSettings, to b: DNSSettings) -> [String] {
        var out: [String] = []
        if a.listen != b.listen { out.append("listen") }
        if a.threads != b.threads { out.append("threads") }
        if a.cacheSize != b.cacheSize { out.append("cache-size") }
        if a.tcpIdleTimeoutMs != b.tcpIdleTimeoutMs { out.append("tcp-idle-timeout") }
        if a.maxTCPConnections != b.maxTCPConnections { out.append("max-tcp-connections") }
        if a.socketBuffer != b.socketBuffer { out.append("socket-buffer") }
        if a.admin != b.admin { out.append("admin") }
        if a.queryLog != b.queryLog { out.append("query-log") }
        if a.upstreamSockets != b.upstreamSockets { out.append("upstream-sockets") }
        return out
    }
}

/// The process environment without Foundation.
enum ProcessInfoLite {
    static var environment: [String: String] {
        var out: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") { out[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
            p += 1
        }
        return out
    }
}

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate a configuration file without starting; prints every problem as file:line: message.")

    @Option(name: .long, help: "Configuration file to check.")
    var config: String

    func run() throws {
        let text: String
        do { text = try ConfigFile.read(config) } catch {
            print("\(error)")
            throw ExitCode(1)
        }
        var s = DNSSettings()
        let (_, diags) = ConfigFile.load(text, file: config, into: &s)
        if !diags.isEmpty {
            for d in diags { print(d) }
            throw ExitCode(1)
        }
        do { _ = try s.makePlan(resolvConfText: try? ConfigFile.read(s.resolvConf), localAddresses: LocalInterfaces.addresses()) } catch {
            print("\(config): \(error)")
            throw ExitCode(1)
        }
        print("\(config): ok")
    }
}

