
/// The element types a safetensors header may name (the reference implementation's
/// full list). Every one can be parsed and validated; `SafetensorsFile.tensor(_:)`
/// converts the float types to float32 and the 32/64-bit integers to int32.
public enum SafetensorsDType: String, Sendable, CaseIterable, Codable {
    case bool = "BOOL"
    case u8 = "U8", i8 = "I8"
    case f8e5m2 = "F8_E5M2", f8e4m3 = "F8_E4M3"
    case i16 = "I16", u16 = "U16", f16 = "F16", bf16 = "BF16"
    case i32 = "I32", u32 = "U32", f32 = "F32"
    case i64 = "I64", u64 = "U64", f64 = "F64"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .bool, .u8, .i8, .f8e5m2, .f8e4m3: return 1
        case .i16, .u16, .f16, .bf16: return 2
        case .i32, .u32, .f32: return 4
        case .i64, .u64, .f64: return 8
        }
    }

    /// Whether the element type is a floating-point format.
    public var isFloatingPoint: Bool {
        switch self {
        case .f8e5m2, .f8e4m3, .f16, .bf16, .f32, .f64: return true
        default: return false
        }
    }
}
