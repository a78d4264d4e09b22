/// Element type of a tensor's storage.
///
/// Compute is float32: activations, router logits, softmax, norms and every accumulation.
/// Weights may also be stored in reduced precision (`bfloat16`, `float16`) or quantized
/// (`int8`, `int4`); the ops that take weights (`Linear`, routed experts, the embedding
/// and output projection) dequantize them on the fly, for inference (no gradients).
/// Token ids and expert indices are `int32`.
///
/// A weight tensor's last axis is its row (the input features of `[out, in]`); the
/// quantized formats keep their scales per row (C layout: `moe_weights.h`, docs/inference.md):
///
/// | dtype | stored per row of K elements | w |
/// |---|---|---|
/// | `float32` | K float32 | as stored |
/// | `bfloat16` / `float16` | K × 2 bytes | as stored |
/// | `int8` | K int8 + one float32 scale | q · s, q ∈ [−127, 127] |
/// | `int4` | ⌈K/32⌉ groups of 16 bytes + one float16 scale per group | q · s_g, q ∈ [−8, 7] |
public enum DType: String, Sendable, Codable, CaseIterable {
    case float32 = "f32"
    case bfloat16 = "bf16"
    case float16 = "f16"
    /// Symmetric int8, one float32 scale per row.
    case int8 = "int8"
    /// Symmetric int4 in groups of 32 along the row, one float16 scale per group.
    case int4 = "int4"
    case int32 = "int32"

    /// The dtypes a weight may be stored in (the `--dtype` values).
    public static let weightFormats: [DType] = [.float32, .bfloat16, .float16, .int8, .int4]

    /// Parses a `--dtype` value (`f32`, `bf16`, `f16`, `int8`, `int4`; `float32`, `bfloat16`,
    /// `float16` also accepted). Throws naming the accepted values.
    public init(weightFormat name: String) throws {
        let aliases: [String: DType] = ["float32": .float32, "fp32": .float32, "bfloat16": .bfloat16,
                                        "float16": .float16, "fp16": .float16]
        guard let d = DType(rawValue: name.lowercased()) ?? aliases[name.lowercased()], d.isWeightFormat else {
            throw SparseMoEError.invalidArgument(op: "dtype", message: "unknown weight dtype '\(name)': expected one of \(DType.weightFormats.map(\.rawValue).joined(separator: ", "))")
        }
        self = d
    }

    /// Whether weights may be stored in this dtype.
    public var isWeightFormat: Bool { self != .int32 }
    /// Whether the dtype carries scales (`int8`, `int4`).
    public var isQuantized: Bool { self == .int8 || self == .int4 }

    /// Elements per int4 scale group.
    public static let int4GroupSize = 32

    /// Bytes of one stored row of `cols` elements (scales not included).
    public func rowBytes(_ cols: Int) -> Int {
        switch self {
        case .float32, .int32: return 4 * cols
        case .bfloat16, .float16: return 2 * cols
        case .int8: return cols
        case .int4: return 16 * ((cols + DType.int4GroupSize - 1) / DType.int4GroupSize)
        }
    }

    /// Scale elements per row: 1 (`int8`, float32), ⌈cols/32⌉ (`int4`, float16), else 0.
    public func scalesPerRow(_ cols: Int) -> Int {
        switch self {
        case .int8: return 1
        case .int4: return (cols + DType.int4GroupSize - 1) / DType.int4GroupSize
        default: return 0
        }
    }

    /// The storage dtype of the scales (`float32` for int8, `float16` for int4).
    public var scaleDType: DType? {
        switch self {
        case .int8: return .float32
        case .int4: return .float16
        default: return nil
        }
    }

    /// Bytes a tensor of `shape` occupies in this dtype, scales included (last axis = row).
    public func storageBytes(shape: [Int]) -> Int {
        guard let cols = shape.last else { return rowBytes(1) }
        let rows = shape.dropLast().reduce(1, *)
        return rows * (rowBytes(cols) + scalesPerRow(cols) * (scaleDType?.rowBytes(1) ?? 0))
    }

    /// Bytes per element of the plain (unscaled) dtypes; nil for `int8`/`int4`, whose rows
    /// carry scales (`rowBytes`, `storageBytes`).
    public var elementBytes: Int? {
        switch self {
        case .float32, .int32: return 4
        case .bfloat16, .float16: return 2
        case .int8, .int4: return nil
        }
    }
}
