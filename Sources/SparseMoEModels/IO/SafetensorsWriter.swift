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

    /// Writes a file whose tensors are produced one at a time: the header comes from the names,
    /// shapes and dtypes alone, then `produce` makes each tensor (in name order) and its bytes
    /// are written before the next is made, so memory holds one tensor at a time.
    package static func write(streaming entries: [(name: String, shape: [Int], dtype: DType)], metadata: [String: String] = [:],
                              to url: URL, produce: (String) throws -> Tensor) throws {
        var layout: [String: (SafetensorsDType, [Int], Int)] = [:]
        var order: [(entry: Int, parts: [String])] = []
        for (i, e) in entries.enumerated().sorted(by: { $0.element.name < $1.element.name }) {
            let parts = partLayout(e.name, shape: e.shape, dtype: e.dtype, floatFormat: .f32)
            for p in parts { layout[p.name] = (p.dtype, p.shape, p.bytes) }
            order.append((i, parts.map(\.name)))
        }
        let header = try headerBytes(layout, dataOrder: order.flatMap(\.parts), metadata: metadata, path: url.path)
        try AtomicFile.write(to: url) { sink in
            try sink.write(header)
            for (i, names) in order {
                let e = entries[i]
                let t = try produce(e.name)
                precondition(t.shape == e.shape && t.dtype == e.dtype, "produced \(t.shape) \(t.dtype) for \(e.name) \(e.shape) \(e.dtype)")
                let parts = parts(e.name, t, floatFormat: .f32)
                precondition(parts.map(\.name) == names)
                for part in parts { try writeData(part, to: sink) }
            }
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

    /// The file tensors of a tensor `name` of `shape` stored as `dtype`: names, file dtypes,
    /// shapes and bytes (as `parts` writes them).
    static func partLayout(_ name: String, shape: [Int], dtype: DType, floatFormat: FloatFormat)
        -> [(name: String, dtype: SafetensorsDType, shape: [Int], bytes: Int)] {
        let lead = Array(shape.dropLast()), cols = shape.last ?? 1
        let rows = lead.reduce(1, *), n = shape.reduce(1, *)
        switch dtype {
        case .float32: return [(name, floatFormat.dtype, shape, n * floatFormat.dtype.byteSize)]
        case .int32: return [(name, .i32, shape, 4 * n)]
        case .bfloat16: return [(name, .bf16, shape, 2 * n)]
        case .float16: return [(name, .f16, shape, 2 * n)]
        case .int8: return [(name, .i8, shape, n), (WeightSource.scaleName(name), .f32, lead, 4 * rows)]
        case .int4:
            let g = DType.int4.scalesPerRow(cols)
            return [(name, .u8, lead + [16 * g], 16 * g * rows), (WeightSource.scaleName(name), .f16, lead + [g], 2 * g * rows)]
        }
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
        var all: [String: Part] = [:]
        for (name, t) in tensors {
            for part in parts(name, t, floatFormat: floatFormat) {
                guard all[part.name] == nil else {
                    throw SparseMoEError.file(path: path, message: "tensor '\(part.name)' would be written twice (a quantized weight's scales take the name '<weight>_scale')")
                }
                all[part.name] = part
            }
        }
        let order = all.keys.sorted()
        let header = try headerBytes(all.mapValues { ($0.dtype, $0.shape, $0.byteCount) }, dataOrder: order, metadata: metadata, path: path)
        return (header, order.map { all[$0]! })
    }

    /// The header for tensors `layout` (file dtype, shape, bytes by name) whose data follows in
    /// `dataOrder`: JSON keys sorted, `__metadata__` first, padded to a multiple of 8.
    static func headerBytes(_ layout: [String: (SafetensorsDType, [Int], Int)], dataOrder: [String], metadata: [String: String],
                            path: String) throws -> Data {
        guard layout["__metadata__"] == nil else {
            throw SparseMoEError.file(path: path, message: "a tensor may not be named '__metadata__'")
        }
        var offsets: [String: Int] = [:]
        var offset = 0
        for name in dataOrder {
            offsets[name] = offset
            offset += layout[name]!.2
        }
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += "\"__metadata__\":{"
            json += metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }.joined(separator: ",")
            json += "}"
            first = false
        }
        for name in layout.keys.sorted() {
            let (dtype, shape, bytes) = layout[name]!
            let start = offsets[name]!
            if !first { json += "," }
            first = false
            json += "\(jsonString(name)):{\"dtype\":\"\(dtype.rawValue)\",\"shape\":[\(shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(start),\(start + bytes)]}"
        }
        json += "}"
        var headerBytes = Data(json.utf8)
        let padding = (8 - headerBytes.count % 8) % 8
        headerBytes.append(contentsOf: [UInt8](repeating: UInt8(ascii: " "), count: padding))
        var out = Data(capacity: 8 + headerBytes.count)
        var n = UInt64(headerBytes.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(headerBytes)
        return out
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
