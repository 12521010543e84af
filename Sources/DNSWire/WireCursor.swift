/// Why a message could not be read. The cursor keeps only the first one, as Knot's
/// `wire_ctx` does: once a read fails every later read returns zero and changes nothing,
/// so a parser can read a whole structure and check for an error once at the end.
public enum WireError: UInt8, Error, Sendable, CustomStringConvertible {
    case truncated = 1
    case labelTooLong
    case nameTooLong
    case forwardPointer
    case pointerLoop
    case badLabelType
    case pointerInQuestion
    case duplicateOPT
    case badOPT
    case countMismatch
    case pointerIntoHeader
    case trailingData

    public var description: String {
        switch self {
        case .truncated: return "message ends in the middle of a field"
        case .labelTooLong: return "label longer than 63 bytes"
        case .nameTooLong: return "name longer than 255 bytes"
        case .forwardPointer: return "compression pointer does not point backwards"
        case .pointerLoop: return "compression pointers form a loop"
        case .badLabelType: return "unknown label type (0x40/0x80)"
        case .pointerInQuestion: return "compression pointer in the question of a query"
        case .duplicateOPT: return "more than one OPT record"
        case .badOPT: return "OPT record is not owned by the root name"
        case .countMismatch: return "section counts do not match the message length"
        case .pointerIntoHeader: return "compression pointer into the header"
        case .trailingData: return "bytes after the last record the counts announce"
        }
    }
}

/// A bounded, read-only cursor over one message. Never reads outside `0..<count`.
public struct WireCursor {
    public let base: UnsafeRawPointer
    public let count: Int
    public var offset: Int
    public var error: WireError?

    @inlinable
    public init(_ base: UnsafeRawPointer, count: Int, offset: Int = 0) {
        self.base = base
        self.count = count
        self.offset = offset
        self.error = offset <= count ? nil : .truncated
    }

    @inlinable public var remaining: Int { error == nil ? count - offset : 0 }
    @inlinable public var ok: Bool { error == nil }

    @inlinable
    public mutating func fail(_ e: WireError) {
        if error == nil { error = e }
    }

    @inlinable
    public mutating func u8() -> UInt8 {
        guard error == nil, offset < count else { fail(.truncated); return 0 }
        let v = base.load(fromByteOffset: offset, as: UInt8.self)
        offset += 1
        return v
    }

    @inlinable
    public mutating func u16() -> UInt16 {
        guard error == nil, count - offset >= 2 else { fail(.truncated); return 0 }
        let v = Wire.u16(base, offset)
        offset += 2
        return v
    }

    @inlinable
    public mutating func u32() -> UInt32 {
        guard error == nil, count - offset >= 4 else { fail(.truncated); return 0 }
        let v = Wire.u32(base, offset)
        offset += 4
        return v
    }

    @inlinable
    public mutating func skip(_ n: Int) {
        guard error == nil, n >= 0, count - offset >= n else { fail(.truncated); return }
        offset += n
    }

    @inlinable
    public mutating func seek(_ to: Int) {
        guard error == nil, to >= 0, to <= count else { fail(.truncated); return }
        offset = to
    }
}

/// Unaligned big-endian loads and stores. Callers check bounds; these never do.
public enum Wire {
    @inlinable @inline(__always)
    public static func u16(_ p: UnsafeRawPointer, _ at: Int) -> UInt16 {
        UInt16(bigEndian: p.loadUnaligned(fromByteOffset: at, as: UInt16.self))
    }

    @inlinable @inline(__always)
    public static func u32(_ p: UnsafeRawPointer, _ at: Int) -> UInt32 {
        UInt32(bigEndian: p.loadUnaligned(fromByteOffset: at, as: UInt32.self))
    }

    @inlinable @inline(__always)
    public static func put16(_ p: UnsafeMutableRawPointer, _ at: Int, _ v: UInt16) {
        p.storeBytes(of: v.bigEndian, toByteOffset: at, as: UInt16.self)
    }

    @inlinable @inline(__always)
    public static func put32(_ p: UnsafeMutableRawPointer, _ at: Int, _ v: UInt32) {
        p.storeBytes(of: v.bigEndian, toByteOffset: at, as: UInt32.self)
    }
}
