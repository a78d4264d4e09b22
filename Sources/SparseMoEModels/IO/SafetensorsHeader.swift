import Foundation
import SparseMoECore

/// One tensor's entry in a safetensors header.
public struct SafetensorsTensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: SafetensorsDType
    public let shape: [Int]
    /// Byte range `[begin, end)` relative to the start of the data section.
    public let dataOffsets: Range<Int>

    /// Number of elements (product of `shape`; 1 for a scalar).
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A parsed and fully validated safetensors header.
///
/// File layout: `N` (8 bytes, little-endian unsigned), then `N` bytes of UTF-8 JSON
/// `{"__metadata__": {String: String}?, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}`,
/// then the data section; offsets are relative to the data section's first byte.
///
/// Validation (each failure throws `SparseMoEError.file` naming the file and, where
/// one is involved, the tensor): file shorter than 8 bytes; `N` beyond the file or
/// above `maxHeaderBytes`; header not a UTF-8 JSON object; entries that are not
/// objects; unknown dtype; shapes or offsets that are negative, non-integer or
/// overflow; `begin > end`; `end` beyond the data section; byte length ≠ elements ×
/// dtype size; two tensors whose byte ranges overlap; metadata values that are not
/// strings. Gaps between tensors are tolerated.
public struct SafetensorsHeader: Sendable {
    /// Largest header accepted (the reference implementation's limit).
    public static let maxHeaderBytes = 100_000_000

    /// Tensors in header order of their data offsets.
    public let tensors: [SafetensorsTensorInfo]
    /// The `__metadata__` map (empty when absent).
    public let metadata: [String: String]
    /// Byte offset of the data section from the start of the file (`8 + N`).
    public let dataStart: Int
    /// Size of the data section in bytes.
    public let dataSize: Int

    private let index: [String: Int]

    /// Looks up a tensor by name.
    public subscript(name: String) -> SafetensorsTensorInfo? {
        index[name].map { tensors[$0] }
    }

    /// Parses and validates the header of a safetensors file held in `bytes`.
    /// `path` is used only in error messages.
    public static func parse(_ bytes: UnsafeRawBufferPointer, path: String) throws -> SafetensorsHeader {
        func fail(_ message: String) -> SparseMoEError { .file(path: path, message: message) }
        let fileSize = bytes.count
        guard fileSize >= 8 else {
            throw fail("truncated safetensors file: \(fileSize) bytes, expected at least 8 for the header length")
        }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard n <= UInt64(maxHeaderBytes) else {
            throw fail("safetensors header length \(n) is absurd (limit \(maxHeaderBytes) bytes)")
        }
        let headerLength = Int(n)
        guard headerLength <= fileSize - 8 else {
            throw fail("safetensors header length \(headerLength) runs beyond the end of the file (\(fileSize) bytes, header must fit in \(fileSize - 8))")
        }
        guard headerLength >= 2 else {
            throw fail("safetensors header length \(headerLength) is too small for a JSON object")
        }
        let headerData = Data(bytes[8..<(8 + headerLength)])
        let dataStart = 8 + headerLength
        let dataSize = fileSize - dataStart
        return try parse(headerJSON: headerData, dataSize: dataSize, dataStart: dataStart, path: path)
    }

    /// Parses and validates header JSON against a data section of `dataSize` bytes.
    static func parse(headerJSON: Data, dataSize: Int, dataStart: Int, path: String) throws -> SafetensorsHeader {
        func fail(_ message: String) -> SparseMoEError { .file(path: path, message: message) }
        guard headerJSON.first == UInt8(ascii: "{") else {
            throw fail("safetensors header does not start with '{' (not a JSON object)")
        }
        guard String(data: headerJSON, encoding: .utf8) != nil else {
            throw fail("safetensors header is not valid UTF-8")
        }
        let raw: RawHeader
        do {
            raw = try JSONDecoder().decode(RawHeader.self, from: headerJSON)
        } catch let error as SparseMoEError {
            throw fail(error.messageWithoutPath)
        } catch {
            throw fail("malformed safetensors header JSON: \(describeDecodingError(error))")
        }

        var tensors: [SafetensorsTensorInfo] = []
        tensors.reserveCapacity(raw.entries.count)
        for (name, entry) in raw.entries {
            guard let dtype = SafetensorsDType(rawValue: entry.dtype) else {
                throw fail("tensor '\(name)': unknown dtype '\(entry.dtype)' (expected one of \(SafetensorsDType.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            var count = 1
            for d in entry.shape {
                guard d >= 0 else { throw fail("tensor '\(name)': negative dimension \(d) in shape \(entry.shape)") }
                let (p, overflow) = count.multipliedReportingOverflow(by: d)
                guard !overflow else { throw fail("tensor '\(name)': shape \(entry.shape) has too many elements") }
                count = p
            }
            let (bytesNeeded, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize)
            guard !overflow else { throw fail("tensor '\(name)': shape \(entry.shape) has too many bytes") }
            guard entry.dataOffsets.count == 2 else {
                throw fail("tensor '\(name)': data_offsets must be [begin, end], found \(entry.dataOffsets.count) values")
            }
            let begin = entry.dataOffsets[0], end = entry.dataOffsets[1]
            guard begin >= 0, end >= 0 else {
                throw fail("tensor '\(name)': negative data_offsets [\(begin), \(end)]")
            }
            guard begin <= end else {
                throw fail("tensor '\(name)': data_offsets [\(begin), \(end)] has begin after end")
            }
            guard end <= dataSize else {
                throw fail("tensor '\(name)': data_offsets [\(begin), \(end)] outside the data section of \(dataSize) bytes")
            }
            guard end - begin == bytesNeeded else {
                throw fail("tensor '\(name)': shape \(entry.shape) × \(dtype.rawValue) (\(dtype.byteSize) bytes) needs \(bytesNeeded) bytes but data_offsets [\(begin), \(end)] hold \(end - begin)")
            }
            tensors.append(SafetensorsTensorInfo(name: name, dtype: dtype, shape: entry.shape, dataOffsets: begin..<end))
        }
        tensors.sort { ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound, $0.name) < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound, $1.name) }
        var previous: SafetensorsTensorInfo?
        for t in tensors where !t.dataOffsets.isEmpty {
            if let p = previous, t.dataOffsets.lowerBound < p.dataOffsets.upperBound {
                throw fail("tensors '\(p.name)' [\(p.dataOffsets.lowerBound), \(p.dataOffsets.upperBound)) and '\(t.name)' [\(t.dataOffsets.lowerBound), \(t.dataOffsets.upperBound)) have overlapping byte ranges")
            }
            previous = t
        }
        var index: [String: Int] = [:]
        for (i, t) in tensors.enumerated() { index[t.name] = i }
        return SafetensorsHeader(tensors: tensors, metadata: raw.metadata, dataStart: dataStart, dataSize: dataSize, index: index)
    }
}

// MARK: - JSON decoding

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// `{"__metadata__": {...}, name: entry, ...}` decoded with strict types: integers
/// must be JSON integers (JSONDecoder rejects 1.5, true and "1" for `Int`).
private struct RawHeader: Decodable {
    var entries: [(String, RawEntry)] = []
    var metadata: [String: String] = [:]

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: AnyKey.self)
        for key in c.allKeys {
            if key.stringValue == "__metadata__" {
                do {
                    metadata = try c.decode([String: String].self, forKey: key)
                } catch {
                    throw SparseMoEError.file(path: "", message: "__metadata__ must be an object of string values: \(describeDecodingError(error))")
                }
                continue
            }
            do {
                entries.append((key.stringValue, try c.decode(RawEntry.self, forKey: key)))
            } catch {
                throw SparseMoEError.file(path: "", message: "tensor '\(key.stringValue)': malformed entry: \(describeDecodingError(error))")
            }
        }
    }
}

private struct RawEntry: Decodable {
    let dtype: String
    let shape: [Int]
    let dataOffsets: [Int]
    enum CodingKeys: String, CodingKey {
        case dtype, shape
        case dataOffsets = "data_offsets"
    }
}

/// A one-line account of a `DecodingError` (which field, what was wrong).
func describeDecodingError(_ error: Error) -> String {
    guard let e = error as? DecodingError else { return "\(error)" }
    func path(_ ctx: DecodingError.Context) -> String {
        let p = ctx.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        return p.isEmpty ? "" : " at '\(p)'"
    }
    switch e {
    case let .typeMismatch(type, ctx): return "expected \(type)\(path(ctx)): \(ctx.debugDescription)"
    case let .valueNotFound(type, ctx): return "missing \(type) value\(path(ctx))"
    case let .keyNotFound(key, ctx): return "missing field '\(key.stringValue)'\(path(ctx))"
    case let .dataCorrupted(ctx): return "corrupted data\(path(ctx)): \(ctx.debugDescription)"
    @unknown default: return "\(e)"
    }
}

extension SparseMoEError {
    /// The message part of a `.file` error (used when re-attaching the real path).
    var messageWithoutPath: String {
        if case let .file(_, message) = self { return message }
        return description
    }
}
