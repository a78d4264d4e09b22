import SparseMoECore

/// The `quantization_config` of a model folder's config.json, checked before any tensor is read.
///
/// The library reads its own layout (`"quant_method": "sparsemoe"`, written by
/// `moe quantize` and `moe init`: int8 with a float32 scale per row, int4 in groups of 32
/// with a float16 scale per group; the scales in `<weight>_scale`). Other methods
/// (GPTQ, AWQ, bitsandbytes, fp8, …) store their weights differently and are refused by name.
enum QuantizationConfig {
    static let method = "sparsemoe"

    /// Throws `SparseMoEError.file` naming the field of a quantization the library cannot read.
    static func check(_ raw: [String: JSONValue], path: String) throws {
        guard let q = raw["quantization_config"] else { return }
        guard case let .object(fields) = q else {
            throw SparseMoEError.file(path: path, message: "quantization_config must be an object, got \(q)")
        }
        guard case let .string(m)? = fields["quant_method"] else {
            throw SparseMoEError.file(path: path, message: "quantization_config.quant_method is missing; expected \"\(method)\"")
        }
        guard m == method else {
            throw SparseMoEError.file(path: path, message: "quantization_config.quant_method \"\(m)\" is not supported: the library reads float32/bf16/f16 checkpoints and its own int8/int4 layout (\"\(method)\", written by `moe quantize`); quantize the original folder with `moe quantize`")
        }
        if case let .int(bits)? = fields["bits"] {
            guard bits == 4 || bits == 8 else {
                throw SparseMoEError.file(path: path, message: "quantization_config.bits = \(bits): expected 4 (int4) or 8 (int8)")
            }
            if bits == 4, let g = fields["group_size"] {
                guard case .int(DType.int4GroupSize) = g else {
                    throw SparseMoEError.file(path: path, message: "quantization_config.group_size = \(g): this library's int4 layout has one scale per group of \(DType.int4GroupSize) along each row; re-quantize with `moe quantize`")
                }
            }
        }
    }
}
