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

    /// Writes `tensors` with optional string `metadata` to `url`. float32 tensors are written
    /// in `floatFormat`; int32 as I32; bf16/f16 as stored; int8 and int4 weights as their
    /// packed rows plus a `<name>_scale` tensor (layout: `WeightSource`).
    public static func write(_ tensors: [String: Tensor], metadata: [String: String] = [:], to url: URL,
                             floatFormat: FloatFormat = .f32) throws {
        let (header, ordered) = try makeHeader(tensors, metadata: metadata, floatFormat: floatFormat, path: url.path)
        try AtomicFile.write(to: url) { sink in
            try sink.write(header)
            for part in ordered { try writeData(part, to: sink) }
        }
    }

    /// The complete file image in memory (small files, tests).
    public static func encode(_ tensors: [String: Tensor], metadata: [String: String] = [:],
                              floatFormat: FloatFormat = .f32) throws -> Data {
        let (header, ordered) = try makeHeader(tensors, metadata: metadata, floatFormat: floatFormat, path: "<memory>")
        var out = header
        for part in ordered {
            if let raw = part.raw { out.append(contentsOf: UnsafeRawBufferPointer(raw)) } else {
                out.append(contentsOf: halfBytes(part.tensor.floats, count: part.tensor.count, dtype: part.dtype))
            }
        }
        return out
    }

    /// One tensor of the file: raw bytes written as they are, or a float32 tensor converted to `dtype`.
    struct Part {
        var name: String
        var dtype: SafetensorsDType
        var shape: [Int]
        var tensor: Tensor
        var raw: UnsafeRawBufferPointer?
        var byteCount: Int { raw?.count ?? tensor.count * dtype.byteSize }
    }

    /// The file's tensors (a quantized weight gives two: its rows and its scales).
    static func parts(_ name: String, _ t: Tensor, floatFormat: FloatFormat) -> [Part] {
        let lead = Array(t.shape.dropLast()), cols = t.shape.last ?? 1
        let rows = lead.reduce(1, *)
        func raw(_ p: UnsafeMutableRawPointer?, _ n: Int) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: p, count: n) }
        switch t.dtype {
        case .float32:
            return [Part(name: name, dtype: floatFormat.dtype, shape: t.shape, tensor: t,
                         raw: floatFormat == .f32 ? raw(t.rawBase, t.count * 4) : nil)]
        case .int32: return [Part(name: name, dtype: .i32, shape: t.shape, tensor: t, raw: raw(t.rawBase, t.count * 4))]
        case .bfloat16: return [Part(name: name, dtype: .bf16, shape: t.shape, tensor: t, raw: raw(t.rawBase, t.count * 2))]
        case .float16: return [Part(name: name, dtype: .f16, shape: t.shape, tensor: t, raw: raw(t.rawBase, t.count * 2))]
        case .int8:
            return [Part(name: name, dtype: .i8, shape: t.shape, tensor: t, raw: raw(t.rawBase, rows * cols)),
                    Part(name: WeightSource.scaleName(name), dtype: .f32, shape: lead, tensor: t, raw: raw(t.scalesBase, rows * 4))]
        case .int4:
            let g = DType.int4.scalesPerRow(cols)
            return [Part(name: name, dtype: .u8, shape: lead + [16 * g], tensor: t, raw: raw(t.rawBase, rows * 16 * g)),
                    Part(name: WeightSource.scaleName(name), dtype: .f16, shape: lead + [g], tensor: t, raw: raw(t.scalesBase, rows * g * 2))]
        }
    }

    /// 8-byte length + padded JSON header, and the tensors in file order.
    static func makeHeader(_ tensors: [String: Tensor], metadata: [String: String], floatFormat: FloatFormat,
                           path: String) throws -> (Data, [Part]) {
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += "\"__metadata__\":{"
            json += metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }.joined(separator: ",")
            json += "}"
            first = false
        }
        var all: [String: Part] = [:]
        for (name, t) in tensors {
            guard name != "__metadata__" else {
                throw SparseMoEError.file(path: path, message: "a tensor may not be named '__metadata__'")
            }
            for part in parts(name, t, floatFormat: floatFormat) {
                guard all[part.name] == nil else {
                    throw SparseMoEError.file(path: path, message: "tensor '\(part.name)' would be written twice (a quantized weight's scales take the name '<weight>_scale')")
                }
                all[part.name] = part
            }
        }
        var offset = 0
        var ordered: [Part] = []
        for name in all.keys.sorted() {
            let part = all[name]!
            if !first { json += "," }
            first = false
            json += "\(jsonString(name)):{\"dtype\":\"\(part.dtype.rawValue)\",\"shape\":[\(part.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + part.byteCount)]}"
            offset += part.byteCount
            ordered.append(part)
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

    static func writeData(_ part: Part, to sink: AtomicFile.Sink) throws {
        if let raw = part.raw {
            try sink.write(raw)
            return
        }
        let t = part.tensor
        var start = 0
        while start < t.count {
            let n = min(chunkElements, t.count - start)
            let chunk = halfBytes(t.floats + start, count: n, dtype: part.dtype)
            try chunk.withUnsafeBytes { try sink.write($0) }
            start += n
        }
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
