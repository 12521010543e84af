/// Domain names in wire form (RFC 1035 3.1, 4.1.4), read in place. Nothing here builds a
/// `String` except `text(...)`, which is for logs and configuration only.
public enum DNSName {
    public static let maxLength = 255
    public static let maxLabel = 63

    /// Reads a name that must not be compressed (the question of a query: a pointer there
    /// could only point into the header). Returns the wire length including the root
    /// label and the number of labels; on failure the cursor holds the error.
    @inlinable
    public static func scanUncompressed(_ c: inout WireCursor) -> (length: Int, labels: Int) {
        let start = c.offset
        var labels = 0
        while true {
            let len = c.u8()
            guard c.ok else { return (0, 0) }
            if len == 0 { break }
            if len & 0xC0 == 0xC0 { c.fail(.pointerInQuestion); return (0, 0) }
            if len & 0xC0 != 0 { c.fail(.badLabelType); return (0, 0) }
            c.skip(Int(len))
            labels += 1
            if c.offset - start + 1 > maxLength { c.fail(.nameTooLong); return (0, 0) }
        }
        return (c.offset - start, labels)
    }

    /// Skips a possibly compressed name and validates it fully: every pointer must point
    /// before the previous jump target (which rules out loops), the bytes read after a jump
    /// must all lie before that pointer (a compressed name only reuses names written
    /// earlier, so it never reaches into its own record or past it), labels ≤ 63 and the
    /// expanded name ≤ 255 bytes. Leaves the cursor just after the name's own bytes.
    @inlinable
    public static func skip(_ c: inout WireCursor) {
        var pos = c.offset
        var end = -1            // where the cursor continues once the first pointer is taken
        var limit = pos         // every jump must land strictly before this
        var bound = c.count     // every byte read must lie before this: the last pointer taken
        var expanded = 0
        while true {
            guard pos < bound else { c.fail(bound < c.count ? .forwardPointer : .truncated); return }
            let len = c.base.load(fromByteOffset: pos, as: UInt8.self)
            if len == 0 {
                expanded += 1
                pos += 1
                break
            }
            switch len & 0xC0 {
            case 0xC0:
                guard pos + 1 < bound else { c.fail(bound < c.count ? .forwardPointer : .truncated); return }
                let target = Int(Wire.u16(c.base, pos) & 0x3FFF)
                if end < 0 { end = pos + 2 }
                guard target < limit else { c.fail(target >= pos ? .forwardPointer : .pointerLoop); return }
                // The header is rewritten per client (ID, flags, counts): no name lives there.
                guard target >= Header.size else { c.fail(.pointerIntoHeader); return }
                limit = target
                bound = pos
                pos = target
            case 0x00:
                expanded += Int(len) + 1
                guard expanded < maxLength else { c.fail(.nameTooLong); return }
                pos += Int(len) + 1
            default:
                c.fail(.badLabelType)
                return
            }
        }
        if expanded > maxLength { c.fail(.nameTooLong); return }
        c.seek(end >= 0 ? end : pos)
    }

    /// Expands a possibly compressed name at the cursor into `out` (≥ 255 bytes), folded to
    /// lower case when `fold` is set. Returns the expanded length; the cursor ends after
    /// the name's own bytes. Same validation as `skip`.
    @inlinable
    public static func expand(_ c: inout WireCursor, into out: UnsafeMutableRawPointer, fold: Bool) -> Int {
        var pos = c.offset
        var end = -1
        var limit = pos
        var bound = c.count
        var n = 0
        while true {
            guard pos < bound else { c.fail(bound < c.count ? .forwardPointer : .truncated); return 0 }
            let len = Int(c.base.load(fromByteOffset: pos, as: UInt8.self))
            if len == 0 {
                out.storeBytes(of: 0, toByteOffset: n, as: UInt8.self)
                n += 1
                pos += 1
                break
            }
            if len & 0xC0 == 0xC0 {
                guard pos + 1 < bound else { c.fail(bound < c.count ? .forwardPointer : .truncated); return 0 }
                let target = Int(Wire.u16(c.base, pos) & 0x3FFF)
                if end < 0 { end = pos + 2 }
                guard target < limit else { c.fail(target >= pos ? .forwardPointer : .pointerLoop); return 0 }
                guard target >= Header.size else { c.fail(.pointerIntoHeader); return 0 }
                limit = target
                bound = pos
                pos = target
                continue
            }
            guard len & 0xC0 == 0 else { c.fail(.badLabelType); return 0 }
            guard n + len + 2 <= maxLength else { c.fail(.nameTooLong); return 0 }
            guard pos + 1 + len <= bound else { c.fail(bound < c.count ? .forwardPointer : .truncated); return 0 }
            out.storeBytes(of: UInt8(len), toByteOffset: n, as: UInt8.self)
            if fold {
                for i in 0..<len {
                    out.storeBytes(of: lower(c.base.load(fromByteOffset: pos + 1 + i, as: UInt8.self)),
                                   toByteOffset: n + 1 + i, as: UInt8.self)
                }
            } else {
                out.advanced(by: n + 1).copyMemory(from: c.base.advanced(by: pos + 1), byteCount: len)
            }
            n += len + 1
            pos += len + 1
        }
        c.seek(end >= 0 ? end : pos)
        return n
    }

    @inlinable @inline(__always)
    public static func lower(_ b: UInt8) -> UInt8 {
        b &- 65 < 26 ? b | 0x20 : b
    }

    /// Compares two uncompressed wire names of the same length, ignoring ASCII case.
    /// Label length bytes are at most 63, below "A", so folding them is harmless.
    @inlinable
    public static func equalIgnoringCase(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, length: Int) -> Bool {
        var i = 0
        while i + 8 <= length {
            let x = a.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            let y = b.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            if x != y && foldWord(x) != foldWord(y) { return false }
            i += 8
        }
        // The last 0-7 bytes as one word, in at most three loads each.
        let x = tail(a, from: i, length: length)
        let y = tail(b, from: i, length: length)
        return x == y || foldWord(x) == foldWord(y)
    }

    /// Bytes `from..<length` (fewer than 8) packed into a word, never reading past `length`.
    @inlinable @inline(__always)
    public static func tail(_ p: UnsafeRawPointer, from start: Int, length: Int) -> UInt64 {
        var i = start
        var w: UInt64 = 0
        var shift: UInt64 = 0
        if length - i >= 4 {
            w = UInt64(p.loadUnaligned(fromByteOffset: i, as: UInt32.self))
            shift = 32
            i += 4
        }
        if length - i >= 2 {
            w |= UInt64(p.loadUnaligned(fromByteOffset: i, as: UInt16.self)) << shift
            shift += 16
            i += 2
        }
        if length - i >= 1 {
            w |= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) << shift
        }
        return w
    }

    /// Lower-cases eight ASCII bytes at once (SWAR): adds 0x20 to each byte in 'A'...'Z'.
    @inlinable @inline(__always)
    public static func foldWord(_ w: UInt64) -> UInt64 {
        let high: UInt64 = 0x8080_8080_8080_8080
        let ones: UInt64 = 0x0101_0101_0101_0101
        let ascii = w & ~high
        let geA = (ascii &+ ones &* UInt64(128 - 65)) & high   // byte >= 'A'
        let gtZ = (ascii &+ ones &* UInt64(128 - 91)) & high   // byte > 'Z'
        let isUpper = geA & ~gtZ & ~(w & high)
        return w | (isUpper >> 2)
    }

    /// Copies `length` bytes of a wire name, folded to lower case.
    @inlinable
    public static func copyLowercased(from src: UnsafeRawPointer, to dst: UnsafeMutableRawPointer, length: Int) {
        var i = 0
        while i + 8 <= length {
            dst.storeBytes(of: foldWord(src.loadUnaligned(fromByteOffset: i, as: UInt64.self)), toByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < length {
            dst.storeBytes(of: lower(src.load(fromByteOffset: i, as: UInt8.self)), toByteOffset: i, as: UInt8.self)
            i += 1
        }
    }

    /// Presentation form of an uncompressed wire name ("web.prod.svc.cluster.local."),
    /// escaping dots and non-printable bytes as RFC 1035 5.1 does. For logs only.
    public static func text(_ p: UnsafeRawPointer, length: Int) -> String {
        var out = ""
        var i = 0
        while i < length {
            let len = Int(p.load(fromByteOffset: i, as: UInt8.self))
            if len == 0 { break }
            for j in 0..<len where i + 1 + j < length {
                let b = p.load(fromByteOffset: i + 1 + j, as: UInt8.self)
                switch b {
                case UInt8(ascii: "."), UInt8(ascii: "\\"): out += "\\" + String(UnicodeScalar(b))
                case 0x21...0x7e: out.unicodeScalars.append(UnicodeScalar(b))
                default: out += "\\" + String(format3: b)
                }
            }
            out += "."
            i += len + 1
        }
        return out.isEmpty ? "." : out
    }

    public static func text(_ wire: [UInt8]) -> String {
        wire.withUnsafeBytes { text($0.baseAddress!, length: $0.count) }
    }

    public enum TextError: Error, Equatable, CustomStringConvertible {
        case emptyLabel(String), labelTooLong(String), nameTooLong(String), badCharacter(String)
        public var description: String {
            switch self {
            case .emptyLabel(let s): return "'\(s)' has an empty label"
            case .labelTooLong(let s): return "'\(s)' has a label longer than 63 characters"
            case .nameTooLong(let s): return "'\(s)' is longer than 255 bytes"
            case .badCharacter(let s): return "'\(s)' contains a character not allowed in a zone name"
            }
        }
    }

    /// Wire form of a name written in presentation form, folded to lower case. Accepts a
    /// trailing dot; "." is the root. For configuration; not on the query path.
    public static func wire(fromText text: String) throws -> [UInt8] {
        var s = Substring(text)
        if s.hasSuffix(".") { s = s.dropLast() }
        var out: [UInt8] = []
        if !s.isEmpty {
            for label in s.split(separator: ".", omittingEmptySubsequences: false) {
                guard !label.isEmpty else { throw TextError.emptyLabel(text) }
                let bytes = Array(label.utf8)
                guard bytes.count <= maxLabel else { throw TextError.labelTooLong(text) }
                guard bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "\\") }) else {
                    throw TextError.badCharacter(text)
                }
                out.append(UInt8(bytes.count))
                out.append(contentsOf: bytes.map(lower))
            }
        }
        out.append(0)
        guard out.count <= maxLength else { throw TextError.nameTooLong(text) }
        return out
    }
}

extension String {
    init(format3 b: UInt8) {
        let d = String(b)
        self = String(repeating: "0", count: 3 - d.count) + d
    }
}
