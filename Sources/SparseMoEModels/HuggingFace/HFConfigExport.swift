import Foundation
import SparseMoECore
import SparseMoENN

/// Hugging Face `config.json` for a library configuration: the reverse of
/// `HuggingFaceFamily.transformerConfig()`.
public enum HFConfigExport {
    /// The family closest to `config` (`HuggingFaceFamilies.closest(to:)`):
    /// MLA or sigmoid routing → DeepSeek-V3; full q/k norm → OLMoE; per-head q/k norm → Qwen3-MoE;
    /// a shared expert or q/k/v biases → Qwen2-MoE; otherwise Mixtral.
    public static func closestArchitecture(_ config: TransformerConfig) -> any HuggingFaceFamily.Type {
        HuggingFaceFamilies.closest(to: config)
    }

    /// config.json fields (transformers 5 spelling, readable by transformers 4) for `config`
    /// saved as `family` (nil = `closestArchitecture`). Throws `invalidConfig` naming what the
    /// family cannot represent. Training-only settings the format has no field for
    /// (z-loss, capacity-free drop policy, bias update rate) are dropped.
    public static func json(for config: TransformerConfig, as family: (any HuggingFaceFamily.Type)? = nil) throws -> [String: JSONValue] {
        let family = family ?? closestArchitecture(config)
        let exported = try family.init(exporting: config)
        var j = exported.configJSON
        j["dtype"] = .string("float32")
        j["use_cache"] = .bool(true)
        // Check: reading the JSON back gives a configuration that computes the same logits.
        let data = try JSONEncoder().encode(JSONValue.object(j))
        let back = try HuggingFaceFamilies.decode(data, path: "config.json (\(exported.modelType) export)")
        let round = try back.transformerConfig()
        if let diff = logitsRelevantDifference(config, round) {
            throw HFExportCheck.refusal(exported.modelType, diff.field, diff.message)
        }
        return j
    }

    /// The first difference between two configurations that changes the forward pass
    /// (parameter shapes or logits), ignoring training-only settings; nil when equivalent.
    static func logitsRelevantDifference(_ a: TransformerConfig, _ b: TransformerConfig) -> (field: String, message: String)? {
        func check<T: Equatable>(_ field: String, _ x: T, _ y: T) -> (String, String)? {
            x == y ? nil : (field, "\(x) would be read back as \(y)")
        }
        let layersA = (0..<a.numLayers).map { a.isMoELayer($0) }, layersB = (0..<b.numLayers).map { b.isMoELayer($0) }
        let denseUsed = layersA.contains(false)
        let checks: [(String, String)?] = [
            check("vocab_size", a.vocabSize, b.vocabSize), check("hidden_size", a.hiddenSize, b.hiddenSize),
            check("num_hidden_layers", a.numLayers, b.numLayers), check("num_attention_heads", a.numHeads, b.numHeads),
            check("num_key_value_heads", a.latentAttention == nil ? a.numKVHeads : 0, b.latentAttention == nil ? b.numKVHeads : 0),
            check("head_dim", a.latentAttention == nil ? a.resolvedHeadDim : 0, b.latentAttention == nil ? b.resolvedHeadDim : 0),
            check("max_position_embeddings", a.maxSequenceLength, b.maxSequenceLength),
            check("rope_theta", a.ropeTheta, b.ropeTheta), check("rope_style", a.ropeStyle, b.ropeStyle),
            check("rms_norm_eps", a.normEps, b.normEps), check("attention_bias", a.attentionBias, b.attentionBias),
            check("qk_norm", a.qkNorm, b.qkNorm), check("latent_attention", a.latentAttention, b.latentAttention),
            check("intermediate_size", denseUsed ? a.intermediateSize : 0, denseUsed ? b.intermediateSize : 0),
            check("tie_word_embeddings", a.tiedEmbeddings, b.tiedEmbeddings),
            check("moe layers", layersA, layersB),
            check("moe.num_experts", a.moe?.numExperts, b.moe?.numExperts), check("moe.top_k", a.moe?.topK, b.moe?.topK),
            check("moe.expert_intermediate_size", a.moe?.expertIntermediateSize, b.moe?.expertIntermediateSize),
            check("moe.router", a.moe?.router, b.moe?.router), check("moe.norm_topk_prob", a.moe?.normalizeTopK, b.moe?.normalizeTopK),
            check("moe.n_group", a.moe?.nGroup, b.moe?.nGroup), check("moe.topk_group", a.moe?.topkGroup, b.moe?.topkGroup),
            check("moe.routed_scaling_factor", a.moe?.routedScalingFactor, b.moe?.routedScalingFactor),
            check("moe.shared_experts", (a.moe?.sharedExperts ?? 0) > 0, (b.moe?.sharedExperts ?? 0) > 0),
            check("moe.shared_expert_intermediate_size", a.moe?.sharedExpertIntermediateSize, b.moe?.sharedExpertIntermediateSize),
            // An ungated shared expert is written gated, with a neutral gate (`HuggingFaceModel.save`).
            a.moe?.sharedGating == SharedExpertGating.none && b.moe?.sharedGating == .sigmoid ? nil
                : check("moe.shared_expert_gating", a.moe?.sharedGating, b.moe?.sharedGating),
        ]
        return checks.compactMap { $0 }.first
    }
}

/// The checks every family's `init(exporting:)` shares, with errors that name the field and
/// say that the family cannot represent it.
public struct HFExportCheck {
    public let config: TransformerConfig
    public let moe: MoEConfig
    /// The `model_type` being written.
    public let modelType: String

    static func refusal(_ modelType: String, _ field: String, _ message: String) -> SparseMoEError {
        .invalidConfig(field: field, message: "\(message): Hugging Face \(modelType) cannot represent this")
    }

    public func refuse(_ field: String, _ message: String) -> SparseMoEError { Self.refusal(modelType, field, message) }

    /// Checks what no family can represent: invalid or dense configurations, positions other
    /// than RoPE, LayerNorm, bidirectional attention, experts other than SwiGLU, capacity limits.
    public init<F: HuggingFaceFamily>(_ config: TransformerConfig, as family: F.Type) throws {
        self.config = config
        modelType = F.modelTypes[0]
        func refuse(_ field: String, _ message: String) -> SparseMoEError { Self.refusal(F.modelTypes[0], field, message) }
        try config.validate()
        guard let m = config.moe else {
            throw refuse("moe", "a dense model (no experts); the exporter writes mixture-of-experts architectures only")
        }
        moe = m
        guard config.positionEncoding == .rope else { throw refuse("position_encoding", "\(config.positionEncoding.rawValue) positions (only RoPE)") }
        guard config.norm == .rms else { throw refuse("norm", "LayerNorm (only RMSNorm)") }
        guard config.causal else { throw refuse("causal", "bidirectional attention") }
        guard config.ffnKind == .swiglu, m.expertKind == .swiglu else {
            throw refuse("ffn_kind", "\(config.ffnKind.rawValue) dense FFN / \(m.expertKind.rawValue) experts (only SwiGLU)")
        }
        guard m.capacityFactor == nil else { throw refuse("moe.capacity_factor", "a capacity limit with token dropping") }
    }

    /// Whether each layer is sparse.
    public var sparseLayers: [Bool] { (0..<config.numLayers).map { config.isMoELayer($0) } }

    public func require(router: RouterKind) throws {
        guard moe.router == router else { throw refuse("moe.router", "router \(moe.router.rawValue) (\(modelType) uses \(router.rawValue))") }
    }

    public func require(qkNorm: QKNorm) throws {
        guard config.qkNorm == qkNorm else { throw refuse("qk_norm", "q/k norm \(config.qkNorm) (\(modelType) has \(qkNorm))") }
    }

    public func requireNoAttentionBias() throws {
        if config.attentionBias { throw refuse("attention_bias", "q/k/v biases") }
    }

    /// Grouped-query attention (not MLA) with half-split RoPE.
    public func requireGroupedAttention() throws {
        if config.latentAttention != nil { throw refuse("latent_attention", "multi-head latent attention") }
        guard config.ropeStyle == .halfSplit else { throw refuse("rope_style", "interleaved RoPE") }
    }

    public func requireNoSharedExperts() throws {
        guard moe.sharedExperts == 0 else { throw refuse("moe.shared_experts", "shared experts") }
    }

    public func requireEveryLayerSparse() throws {
        let sparse = sparseLayers
        guard !sparse.contains(false) else {
            throw refuse("moe.dense_layers", "dense layers \((0..<config.numLayers).filter { !sparse[$0] }) (every \(modelType) layer is sparse)")
        }
    }
}
