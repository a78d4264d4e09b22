import Foundation
import SparseMoECore

/// Named model configurations for the command line (`--config tiny-moe`) and the trainer.
///
/// Each MoE preset has a dense twin with the same active parameters per token: its FFN
/// width is K × the expert width (SwiGLU both), so the pair differs only in the router
/// and the E − K idle experts.
///
/// | name        | layers | C   | heads | FFN                                  | max T |
/// |-------------|--------|-----|-------|--------------------------------------|-------|
/// | tiny-moe    | 4      | 128 | 4     | layer 0 SwiGLU 512; layers 1–3: 8 SwiGLU experts of 256, top-2 | 128   |
/// | tiny-dense  | 4      | 128 | 4     | SwiGLU 512                           | 128   |
/// | small-moe   | 8      | 256 | 8     | 16 SwiGLU experts of 512, top-2      | 256   |
/// | small-dense | 8      | 256 | 8     | SwiGLU 1024                          | 256   |
/// | medium-moe  | 8      | 512 | 8     | 16 SwiGLU experts of 1024, top-2     | 512   |
/// | medium-dense| 8      | 512 | 8     | SwiGLU 2048                          | 512   |
///
/// medium-moe holds ≈ 210 M parameters (≈ 34 M active per token): training it in float32
/// needs ≈ 3.3 GB for weights, gradients and AdamW moments plus the activations of a batch
/// (`TrainingMemoryEstimate`, `moe flops --memory`); docs/training.md says what it takes.
///
/// tiny-moe's first layer is dense (`first_k_dense` 1, as DeepSeek-V3 and GLM-4.5 keep
/// theirs): with it, and peak lr 2e-3, it beats its dense twin by more than 0.01 nats at 1,500
/// steps on four of the five corpora of the ablation in docs/scaling.md (by 0.003 on the fifth,
/// the King James Bible); its form with all four layers routed lost on the synthetic corpus and
/// the Bible and is kept as `Benchmarks/ablation/tiny-moe-8x256.json`.
///
/// All: RoPE, RMSNorm, untied embeddings, softmax top-k routing (dropless), vocabulary
/// `TransformerConfig.presetVocabSize` (bytes + a few special tokens).
extension TransformerConfig {
    /// Vocabulary of the presets: 256 byte values plus 4 special tokens.
    public static let presetVocabSize = 260

    /// The preset names, in the order of the table above.
    public static let presetNames = ["tiny-moe", "tiny-dense", "small-moe", "small-dense", "medium-moe", "medium-dense"]

    /// The preset called `name`; throws `invalidConfig(field: "preset")` listing the known names.
    public static func preset(named name: String) throws -> TransformerConfig {
        switch name {
        case "tiny-moe": return makePreset(layers: 4, hiddenSize: 128, heads: 4, maxSequence: 128, numExperts: 8, topK: 2, expertIntermediateSize: 256,
                                           firstDense: 1)
        case "tiny-dense": return makePreset(layers: 4, hiddenSize: 128, heads: 4, maxSequence: 128, intermediateSize: 2 * 256)
        case "small-moe": return makePreset(layers: 8, hiddenSize: 256, heads: 8, maxSequence: 256, numExperts: 16, topK: 2, expertIntermediateSize: 512)
        case "small-dense": return makePreset(layers: 8, hiddenSize: 256, heads: 8, maxSequence: 256, intermediateSize: 2 * 512)
        case "medium-moe": return makePreset(layers: 8, hiddenSize: 512, heads: 8, maxSequence: 512, numExperts: 16, topK: 2, expertIntermediateSize: 1024)
        case "medium-dense": return makePreset(layers: 8, hiddenSize: 512, heads: 8, maxSequence: 512, intermediateSize: 2 * 1024)
        default:
            throw SparseMoEError.invalidConfig(field: "preset",
                                               message: "unknown preset '\(name)'; known presets: \(presetNames.joined(separator: ", "))")
        }
    }

    /// A preset when `spec` names one, else the JSON file at path `spec` (see `load(from:)`).
    public static func load(presetOrPath spec: String) throws -> TransformerConfig {
        if presetNames.contains(spec) { return try preset(named: spec) }
        guard FileManager.default.fileExists(atPath: spec) else {
            throw SparseMoEError.invalidConfig(field: "config",
                                               message: "'\(spec)' is neither a preset (\(presetNames.joined(separator: ", "))) nor an existing file")
        }
        return try load(from: URL(fileURLWithPath: spec))
    }

    /// Reads and validates a TransformerConfig JSON file (snake_case keys, see `CodingKeys`).
    /// Errors are `SparseMoEError.file` naming the file and the bad or missing field.
    public static func load(from url: URL) throws -> TransformerConfig {
        let data = try UserFile.read(url, what: "a TransformerConfig JSON file (or a preset: \(presetNames.joined(separator: ", ")))")
        let config: TransformerConfig
        do {
            config = try decodeJSON(TransformerConfig.self, from: data)
        } catch {
            throw SparseMoEError.file(path: url.path, message: "not a TransformerConfig: \(describeDecodingError(error))")
        }
        do {
            try config.validate()
        } catch let e as SparseMoEError {
            throw SparseMoEError.file(path: url.path, message: e.description)
        }
        return config
    }

    private static func makePreset(layers: Int, hiddenSize: Int, heads: Int, maxSequence: Int, numExperts: Int = 0, topK: Int = 0,
                                   expertIntermediateSize: Int = 0, firstDense: Int = 0, intermediateSize: Int? = nil) -> TransformerConfig {
        var moe = numExperts > 0 ? MoEConfig(numExperts: numExperts, topK: topK, expertIntermediateSize: expertIntermediateSize) : nil
        moe?.firstDense = firstDense
        return TransformerConfig(vocabSize: presetVocabSize, hiddenSize: hiddenSize, numLayers: layers, numHeads: heads,
                                 maxSequenceLength: maxSequence, intermediateSize: intermediateSize ?? topK * expertIntermediateSize, moe: moe)
    }
}
