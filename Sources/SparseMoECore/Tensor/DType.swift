/// Element type of a tensor's storage.
///
/// All compute is Float32 today. The storage records its element type so that
/// reduced-precision weights (bf16, f16) and int8-with-scales can be stored and
/// converted without changing the `Tensor` API. Token ids and expert indices use
/// `int32`.
public enum DType: String, Sendable, Codable, CaseIterable {
    case float32 = "F32"
    case float16 = "F16"
    case bfloat16 = "BF16"
    case int8 = "I8"
    case int32 = "I32"
    case int64 = "I64"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .float32, .int32: return 4
        case .float16, .bfloat16: return 2
        case .int8: return 1
        case .int64: return 8
        }
    }
}
