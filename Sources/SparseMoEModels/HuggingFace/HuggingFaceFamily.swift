import Foundation
import SparseMoECore
import SparseMoENN

/// One Hugging Face mixture-of-experts architecture (Mixtral, Qwen2-MoE, ...): its
/// `config.json` as a `Codable` type, what the library builds from it, its checkpoint
/// tensor names, and how a library configuration is written as it.
///
/// A conforming type decodes the shared fields with `HFCommonConfig(from:family:defaults:)`
/// and its own with its `CodingKeys`; it is listed in `HuggingFaceFamilies.registered`.
/// Encoding writes `configJSON` (transformers 5 spelling, readable by transformers 4).
public protocol HuggingFaceFamily: Codable, Sendable, Equatable {
    /// The `config.json` `model_type` values read as this family; the first is written.
    static var modelTypes: [String] { get }
    /// transformers' class for the model, written to `architectures`.
    static var causalLMClass: String { get }
    /// Where the checkpoint's tensor names differ from the library's.
    static var weightNames: HFWeightNames { get }

    /// The fields every family has.
    var common: HFCommonConfig { get }
    /// The family's own fields, in transformers 5 spelling (the shared ones come from `common`).
    var ownJSON: [String: JSONValue] { get }
    /// Width of one routed expert.
    var expertIntermediateSize: Int { get }
    /// Whether decoder layer `i` (0-based) has a mixture-of-experts block (else a dense MLP),
    /// exactly as transformers builds the model.
    func isSparseLayer(_ i: Int) -> Bool
    /// What transformers builds, in family-neutral terms (for parameter and FLOP accounting,
    /// which also covers what the library cannot run).
    var layout: HFLayout { get }
    /// Checkpoint layers beyond `num_hidden_layers` that transformers skips (DeepSeek-V3's
    /// multi-token prediction).
    var skippedCheckpointLayers: Range<Int> { get }

    /// The library configuration that computes what transformers computes for this config
    /// (same parameter shapes, same logits). Throws `invalidConfig` naming the field of a
    /// feature the library does not implement.
    func transformerConfig() throws -> TransformerConfig

    /// Whether this family is the natural one to write `config` as (asked in
    /// `HuggingFaceFamilies.registered` order; the first that claims it wins).
    static func claims(_ config: TransformerConfig) -> Bool
    /// `config` written as this family. Throws `invalidConfig` naming what the family cannot
    /// represent (use `HFExportCheck` for the shared checks).
    init(exporting config: TransformerConfig) throws
}

/// The parts of a family's model that the shared fields do not say, in family-neutral terms.
public struct HFLayout: Sendable, Equatable {
    public enum Attention: Sendable, Equatable {
        /// Grouped-query attention of `headDim` per head.
        case grouped(headDim: Int, qkvBias: Bool, outputBias: Bool, qkNorm: QKNorm, slidingWindow: Int?)
        /// Multi-head latent attention; `bias` on q_a, kv_a and o.
        case latent(LatentAttentionConfig, bias: Bool)
    }

    public var attention: Attention
    /// Sigmoid router scores (else softmax).
    public var sigmoidScoring = false
    /// The router stores `e_score_correction_bias`.
    public var routerCorrectionBias = false
    /// Shared experts of a sparse layer, and their total width (0: none).
    public var sharedExperts = 0
    public var sharedExpertWidth = 0
    /// The shared-expert output is scaled by σ(x·w) (`shared_expert_gate`).
    public var sharedExpertGate = false

    public init(attention: Attention, sigmoidScoring: Bool = false, routerCorrectionBias: Bool = false,
                sharedExperts: Int = 0, sharedExpertWidth: Int = 0, sharedExpertGate: Bool = false) {
        self.attention = attention
        self.sigmoidScoring = sigmoidScoring
        self.routerCorrectionBias = routerCorrectionBias
        self.sharedExperts = sharedExperts
        self.sharedExpertWidth = sharedExpertWidth
        self.sharedExpertGate = sharedExpertGate
    }
}

extension HuggingFaceFamily {
    /// The `model_type` as read (or to be written).
    public var modelType: String { common.modelType }

    public var skippedCheckpointLayers: Range<Int> { 0..<0 }

    /// The whole config.json: shared fields, `architectures` and the family's own fields.
    public var configJSON: [String: JSONValue] {
        var j = common.json
        j["architectures"] = .array([.string(Self.causalLMClass)])
        j.merge(ownJSON) { _, own in own }
        return j
    }

    public func encode(to encoder: Encoder) throws {
        try JSONValue.object(configJSON).encode(to: encoder)
    }

    /// Decodes config JSON of this family; `path` is named in errors.
    public static func decode(_ data: Data, path: String = "config.json") throws -> Self {
        try HuggingFaceFamilies.naming(path) { try decodeJSON(Self.self, from: data) }
    }

    /// Reads and decodes `config.json` (or any file holding it); errors name the file and field.
    public static func load(from url: URL) throws -> Self {
        try decode(HuggingFaceFamilies.read(url), path: url.path)
    }

    /// `c` with this config's exact sparse-layer pattern (an explicit dense list where the
    /// library's every/firstDense/denseLayers cannot say it otherwise), validated.
    func finishing(_ c: TransformerConfig) throws -> TransformerConfig {
        var c = c
        let n = common.numHiddenLayers
        try validateConverted(c)  // bounds num_hidden_layers before the walk over the layers
        if (0..<n).contains(where: { c.isMoELayer($0) != isSparseLayer($0) }) {
            c.moe!.every = 1
            c.moe!.firstDense = 0
            c.moe!.denseLayers = (0..<n).filter { !isSparseLayer($0) }
        }
        try validateConverted(c)
        return c
    }

    private func validateConverted(_ c: TransformerConfig) throws {
        do { try c.validate() } catch let e as SparseMoEError {
            throw SparseMoEError.invalidConfig(field: modelType, message: "converted configuration is invalid: \(e.description)")
        }
    }
}
