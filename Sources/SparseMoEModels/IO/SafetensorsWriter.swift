import Foundation
import SparseMoECore

/// Writes tensors in the safetensors format, atomically (`AtomicFile`).
///
/// Layout as the reference implementation writes it: tensors sorted by name and
/// packed back to back; the JSON header (`__metadata__` first when present) padded
/// with spaces so that `8 + N` is a multiple of 8, which keeps every tensor's data
/// 8-byte aligned in a memory map.
public enum SafetensorsWriter {
    /// Element type written for float32 tensors.
    public enum FloatFormat: Sendable {
        case f32
        /// bfloat16, rounded to nearest even (halves the file; lossy).
        case bf16
        /// IEEE half, rounded to nearest even (lossy; overflows to ±inf beyond 65504).
        case f16

        var dtype: SafetensorsDType {
            switch self {
            case .f32: return .f32
            case .bf16: return .bf16
            case .f16: return .f16
            }
        }
    }

    /// Writes `tensors` (float32 or int32) with optional string `metadata` to `url`.
    public static func write(_ tensors: [String: Tensor], metadata: [String: String] = [:], to url: URL,
                             floatFormat: FloatFormat = .f32) throws {
        let (header, ordered) = try makeHeader(tensors, metadata: metadata, floatFormat: floatFormat, path: url.path)
        try AtomicFile.write(to: url) { sink in
            try sink.write(header)
            for (tensor, dtype) in ordered { try writeData(tensor, as: dtype, to: sink) }
        }
    }

    /// The complete file image in memory (small files, tests).
    public static func encode(_ tensors: [String: Tensor], metadata: [String: String] = [:],
                              floatFormat: FloatFormat = .f32) throws -> Data {
        let (header, ordered) = try makeHeader(tensors, metadata: metadata, floatFormat: floatFormat, path: "<memory>")
        var out = header
        for (tensor, dtype) in ordered {
            out.append(contentsOf: bytes(of: tensor, as: dtype))
        }
        return out
    }

    /// 8-byte length + padded JSON header, and the tensors in file order with their dtypes.
    static func makeHeader(_ tensors: [String: Tensor], metadata: [String: String], floatFormat: FloatFormat,
                           path: String) throws -> (Data, [(Tensor, SafetensorsDType)]) {
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += "\"__metadata__\":{"
            json += metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }.joined(separator: ",")
            json += "}"
            first = false
        }
        var offset = 0
        var ordered: [(Tensor, SafetensorsDType)] = []
        for name in tensors.keys.sorted() {
            guard name != "__metadata__" else {
                throw SparseMoEError.file(path: path, message: "a tensor may not be named '__metadata__'")
            }
            let t = tensors[name]!
            let dtype: SafetensorsDType
            switch t.dtype {
            case .float32: dtype = floatFormat.dtype
            case .int32: dtype = .i32
            default:
                throw SparseMoEError.file(path: path, message: "tensor '\(name)': cannot write storage dtype \(t.dtype.rawValue) (float32 and int32 only)")
            }
            let byteCount = t.count * dtype.byteSize
            if !first { json += "," }
            first = false
            json += "\(jsonString(name)):{\"dtype\":\"\(dtype.rawValue)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + byteCount)]}"
            offset += byteCount
            ordered.append((t, dtype))
        }
        json += "}"
        var headerBytes = Data(json.utf8)
        let padding = (8 - headerBytes.count % 8) % 8
        headerBytes.append(contentsOf: [UInt8](repeating: UInt8(ascii: " "), count: padding))
        var out = Data(capacity: 8 + headerBytes.count)
        var n = UInt64(headerBytes.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(headerBytes)
        return (out, ordered)
    }

    private static let chunkElements = 1 << 16

    static func writeData(_ t: Tensor, as dtype: SafetensorsDType, to sink: AtomicFile.Sink) throws {
        if dtype == .f32 || dtype == .i32 {
            try sink.write(UnsafeRawBufferPointer(start: t.storage.raw + t.offset * 4, count: t.count * 4))
            return
        }
        var start = 0
        while start < t.count {
            let n = min(chunkElements, t.count - start)
            let chunk = halfBytes(t.floats + start, count: n, dtype: dtype)
            try chunk.withUnsafeBytes { try sink.write($0) }
            start += n
        }
    }

    static func bytes(of t: Tensor, as dtype: SafetensorsDType) -> [UInt8] {
        if dtype == .f32 || dtype == .i32 {
            return Array(UnsafeRawBufferPointer(start: t.storage.raw + t.offset * 4, count: t.count * 4))
        }
        return halfBytes(t.floats, count: t.count, dtype: dtype)
    }

    private static func halfBytes(_ p: UnsafeMutablePointer<Float>, count n: Int, dtype: SafetensorsDType) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 2 * n)
        for i in 0..<n {
            let bits = dtype == .bf16 ? HalfPrecision.bfloat16Bits(from: p[i]) : HalfPrecision.float16Bits(from: p[i])
            out[2 * i] = UInt8(bits & 0xFF)
            out[2 * i + 1] = UInt8(bits >> 8)
        }
        return out
    }

    /// A JSON string literal for `s` (quotes, backslashes and control characters escaped).
    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    out += "\\u" + String(repeating: "0", count: 4 - String(u.value, radix: 16).count) + String(u.value, radix: 16)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
