/// A server or listener address with its port: `10.96.0.10`, `10.96.0.10:5353`,
/// `[fd00::10]:53` or `::1` (a bare IPv6 address without brackets takes the default port).
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case invalid(String)
        public var description: String {
            switch self {
            case .invalid(let s):
                return "'\(s)' is not an address with an optional port (expected e.g. 10.96.0.10, 10.96.0.10:5353 or [fd00::10]:53)"
            }
        }
    }

    public init(parsing text: String, defaultPort: UInt16 = 53) throws {
        func port(_ s: Substring) throws -> UInt16 {
            guard !s.isEmpty, s.allSatisfy(\.isNumber), let p = UInt16(s), p != 0 else { throw ParseError.invalid(text) }
            return p
        }
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), let a = IPAddress(text[text.index(after: text.startIndex)..<close]),
                  a.family == .v6 else { throw ParseError.invalid(text) }
            let rest = text[text.index(after: close)...]
            if rest.isEmpty { self.init(address: a, port: defaultPort); return }
            guard rest.first == ":" else { throw ParseError.invalid(text) }
            self.init(address: a, port: try port(rest.dropFirst()))
            return
        }
        if let a = IPAddress(text) { self.init(address: a, port: defaultPort); return }
        guard let colon = text.lastIndex(of: ":"), let a = IPAddress(text[..<colon]), a.family == .v4 else {
            throw ParseError.invalid(text)
        }
        self.init(address: a, port: try port(text[text.index(after: colon)...]))
    }

    public var description: String {
        address.family == .v6 ? "[\(address)]:\(port)" : "\(address):\(port)"
    }
}
