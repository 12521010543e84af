#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import NetAddress

/// Everything that can stop `kubebridge routes`, worded for the administrator reading it.
public enum RouteError: Error, CustomStringConvertible {
    case system(SystemError)
    /// The kernel refused a request. `operation` is the equivalent `ip` command.
    case kernel(operation: String, errno: Int32, message: String?)
    case malformedReply(operation: String, NetlinkParseError)
    case timeout(operation: String, seconds: Double)
    case unknownInterface(String)
    case invalidConfiguration(String)
    /// A delete was about to touch a route that is not kubebridge's. Never sent.
    case notOwned(String)

    public var description: String {
        switch self {
        case .system(let e):
            return e.description
        case let .kernel(operation, code, message):
            var text = "\(operation): "
            if let m = message, !m.isEmpty {
                text += "\(m) (\(String(cString: strerror(code))))"
            } else {
                text += String(cString: strerror(code))
            }
            switch code {
            case EPERM: text += "; run as root or with CAP_NET_ADMIN"
            case EEXIST: text += "; a route appeared meanwhile, run `kubebridge routes plan` to see whose"
            case ENETUNREACH: text += "; the next hop is not on a directly connected subnet (or its interface is down)"
            default: break
            }
            return text
        case let .malformedReply(operation, e):
            return "\(operation): \(e)"
        case let .timeout(operation, seconds):
            return "\(operation): no answer from the kernel within \(Int(seconds)) s"
        case .unknownInterface(let name):
            return "interface '\(name)' does not exist (see `ip link`)"
        case .invalidConfiguration(let text):
            return text
        case .notOwned(let route):
            return "refusing to delete \(route): it is not kubebridge's (protocol id \(RouteProtocol.kubebridge))"
        }
    }
}
