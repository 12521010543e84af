import ArgumentParser

public struct Kubebridge: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "kubebridge",
        abstract: "Bridge an office network to a Kubernetes cluster: split DNS with a cache, and routes.",
        subcommands: [DNSCommand.self, CheckCommand.self, RoutesCommand.self])

    public init() {}
}
