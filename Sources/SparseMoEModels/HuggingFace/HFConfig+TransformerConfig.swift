import Foundation
import SparseMoECore
import SparseMoENN

/// Options transformers reads from `config.json` that `HFConfig` does not carry, but
/// that change what the model computes or can be refused on.
public struct HFConfigExtras: Sendable, Equatable {
    /// DeepSeek-V3 `rope_interleave` (transformers' default: true).
    public var ropeInterleave: Bool = true
    /// OLMoE `clip_qkv` (null = off; the library refuses any other value).
    public var clipQKV: Double?
    /// Mixtral `router_jitter_noise` (training only).
    public var routerJitterNoise: Double = 0
    /// `initializer_range` (initialisation of a fresh model only).
    public var initializerRange: Double = 0.02

    public init() {}

    /// Reads the extra fields from a decoded config.json object.
    public init(json: [String: JSONValue]) throws {
        func number(_ key: String) throws -> Double? {
            guard let v = json[key], v != .null else { return nil }
            guard let n = v.number else { throw SparseMoEError.invalidConfig(field: key, message: "expected a number, found \(v)") }
            return n
        }
        if let v = json["rope_interleave"], v != .null {
            guard case let .bool(b) = v else { throw SparseMoEError.invalidConfig(field: "rope_interleave", message: "expected true or false, found \(v)") }
            ropeInterleave = b
        }
        clipQKV = try number("clip_qkv")
        routerJitterNoise = try number("router_jitter_noise") ?? 0
        initializerRange = try number("initializer_range") ?? 0.02
    }
}

extension HFConfig {
    /// The library configuration that computes what transformers computes for this
    /// checkpoint (same parameter shapes, same logits).
    ///
    /// Per architecture:
    /// - Mixtral: softmax top-k, renormalised; every layer sparse; expert width `intermediate_size`.
    /// - Qwen2-MoE: q/k/v bias (`qkv_bias`), a shared expert of width `shared_expert_intermediate_size`
    ///   scaled by σ(x·w) (`shared_expert_gate`), `norm_topk_prob`, `decoder_sparse_step`, `mlp_only_layers`.
    /// - Qwen3-MoE: per-head q/k RMSNorm, explicit `head_dim`, `norm_topk_prob`, sparse step, `mlp_only_layers`.
    /// - OLMoE: q/k RMSNorm over the full projections, `norm_topk_prob`; every layer sparse.
    /// - DeepSeek-V3: multi-head latent attention; sigmoid routing with `e_score_correction_bias`,
    ///   `n_group`/`topk_group`, `routed_scaling_factor`; `n_shared_experts` ungated shared experts of
    ///   total width `moe_intermediate_size × n_shared_experts`; the first `first_k_dense_replace`
    ///   layers dense; `rope_interleave` → `RotaryStyle.interleaved`.
    ///
    /// Refused with `invalidConfig` naming the field: activations other than SiLU, RoPE scaling
    /// (`rope_parameters` other than the default type), o_proj / MLA biases (`attention_bias`
    /// for OLMoE, Qwen3-MoE, DeepSeek-V3), OLMoE `clip_qkv`, a scoring function other than the
    /// architecture's. A sliding window (Mixtral `sliding_window`, Qwen `use_sliding_window`)
    /// caps `maxSequenceLength` at the window, so every sequence the model accepts attends fully,
    /// exactly as transformers does.
    public func transformerConfig(extras: HFConfigExtras = HFConfigExtras()) throws -> TransformerConfig {
        func refuse(_ field: String, _ message: String) -> SparseMoEError {
            .invalidConfig(field: field, message: "\(message) (\(modelType.rawValue) checkpoint; not supported by the library)")
        }
        guard hiddenAct == "silu" else { throw refuse("hidden_act", "'\(hiddenAct)': only silu (SwiGLU experts) is supported") }
        guard ropeScaling.isEmpty else {
            throw refuse("rope_parameters", "RoPE scaling \(JSONValue.object(ropeScaling)) is not implemented, only the default rope_type")
        }
        if attentionBias && modelType != .mixtral && modelType != .qwen2MoE {
            throw refuse("attention_bias", "true: biases on o_proj\(modelType == .deepseekV3 ? ", q_a_proj and kv_a_proj_with_mqa" : "") are not implemented")
        }
        if modelType == .olmoe, let clip = extras.clipQKV {
            throw refuse("clip_qkv", "\(clip): clipping q/k/v is not implemented")
        }
        if modelType == .deepseekV3 && moeLayerFreq != 1 {
            throw refuse("moe_layer_freq", "\(moeLayerFreq): transformers ignores it (every layer from first_k_dense_replace on is sparse) while DeepSeek's code honours it; only 1 is unambiguous")
        }
        let expectedScoring = modelType == .deepseekV3 ? "sigmoid" : "softmax"
        guard scoringFunc == expectedScoring else { throw refuse("scoring_func", "'\(scoringFunc)', expected '\(expectedScoring)'") }

        var maxLength = maxPositionEmbeddings
        if let w = slidingWindow { maxLength = min(maxLength, w) }
        var c = TransformerConfig(vocabSize: vocabSize, hiddenSize: hiddenSize, numLayers: numHiddenLayers,
                                  numHeads: numAttentionHeads, numKVHeads: numKeyValueHeads,
                                  headDim: modelType == .deepseekV3 ? nil : headDim, maxSequenceLength: maxLength,
                                  intermediateSize: intermediateSize)
        c.positionEncoding = .rope
        c.ropeTheta = Float(ropeTheta)
        c.norm = .rms
        c.normEps = Float(rmsNormEps)
        c.ffnKind = .swiglu
        c.tiedEmbeddings = tieWordEmbeddings
        c.initStd = Float(extras.initializerRange)
        c.causal = true
        switch modelType {
        case .mixtral: break
        case .qwen2MoE: c.attentionBias = qkvBias
        case .qwen3MoE: c.qkNorm = .perHead
        case .olmoe: c.qkNorm = .full
        case .deepseekV3:
            c.latentAttention = LatentAttentionConfig(qLoraRank: qLoraRank, kvLoraRank: kvLoraRank!, qkNopeHeadDim: qkNopeHeadDim!,
                                                      qkRopeHeadDim: qkRopeHeadDim!, vHeadDim: vHeadDim!)
            c.ropeStyle = extras.ropeInterleave ? .interleaved : .halfSplit
            c.numKVHeads = numAttentionHeads
        }

        var m = MoEConfig(numExperts: numExperts, topK: numExpertsPerToken, expertHidden: expertIntermediateSize)
        m.expertKind = .swiglu
        m.normalizeTopK = normTopKProb
        m.auxLossCoefficient = Float(routerAuxLossCoef)
        m.zLossCoefficient = 0
        m.jitter = Float(extras.routerJitterNoise)
        switch modelType {
        case .mixtral, .olmoe:
            m.router = .softmaxTopK
        case .qwen2MoE, .qwen3MoE:
            m.router = .softmaxTopK
            m.every = decoderSparseStep
            m.denseLayers = mlpOnlyLayers.filter { $0 < numHiddenLayers }.sorted()
            if modelType == .qwen2MoE {
                m.sharedExperts = 1
                m.sharedExpertHidden = sharedExpertWidth
                m.sharedGating = .sigmoid
            }
        case .deepseekV3:
            m.router = .sigmoidBias
            m.nGroup = nGroup!
            m.topkGroup = topKGroup!
            m.routedScalingFactor = Float(routedScalingFactor)
            m.sharedExperts = numSharedExperts
            m.sharedExpertHidden = sharedExpertWidth
            m.sharedGating = .none
            m.firstDense = firstKDenseReplace
            m.sequenceLevelAuxLoss = true
            m.auxLossCoefficient = 0  // DeepSeek-V3 balances with the bias (aux-loss-free)
        }
        c.moe = m
        // Express the exact sparse-layer pattern; fall back to an explicit dense list.
        if (0..<numHiddenLayers).contains(where: { c.isMoELayer($0) != isSparseLayer($0) }) {
            c.moe!.every = 1
            c.moe!.firstDense = 0
            c.moe!.denseLayers = (0..<numHiddenLayers).filter { !isSparseLayer($0) }
        }
        do { try c.validate() } catch let e as SparseMoEError {
            throw SparseMoEError.invalidConfig(field: modelType.rawValue, message: "converted configuration is invalid: \(e.description)")
        }
        return c
    }
}

/// Hugging Face `config.json` for a library configuration: the reverse of
/// `HFConfig.transformerConfig`.
public enum HFConfigExport {
    /// The Hugging Face architecture closest to `config`:
    /// MLA or sigmoid routing → DeepSeek-V3; full q/k norm → OLMoE; per-head q/k norm → Qwen3-MoE;
    /// a shared expert or q/k/v biases → Qwen2-MoE; otherwise Mixtral.
    public static func closestArchitecture(_ config: TransformerConfig) -> HFConfig.ModelType {
        if config.latentAttention != nil || config.moe?.router == .sigmoidBias { return .deepseekV3 }
        switch config.qkNorm {
        case .full: return .olmoe
        case .perHead: return .qwen3MoE
        case .none: break
        }
        if config.attentionBias || (config.moe?.sharedExperts ?? 0) > 0 { return .qwen2MoE }
        return .mixtral
    }

    /// The `architectures` entry transformers uses for each model type.
    public static func causalLMClass(_ type: HFConfig.ModelType) -> String {
        switch type {
        case .mixtral: return "MixtralForCausalLM"
        case .qwen2MoE: return "Qwen2MoeForCausalLM"
        case .qwen3MoE: return "Qwen3MoeForCausalLM"
        case .olmoe: return "OlmoeForCausalLM"
        case .deepseekV3: return "DeepseekV3ForCausalLM"
        }
    }

    /// A decimal that prints like the Float (1e-06, not 9.99999997e-07).
    static func number(_ x: Float) -> JSONValue {
        if x.rounded() == x && abs(x) < 1e15 { return .double(Double(Int(x))) }
        return .double(Double("\(x)") ?? Double(x))
    }

    /// config.json fields (transformers 5 spelling, readable by transformers 4) for `config`
    /// saved as `type` (nil = `closestArchitecture`). Throws `invalidConfig` naming what the
    /// architecture cannot represent. Training-only settings the format has no field for
    /// (z-loss, capacity-free drop policy, bias update rate, initialisation) are dropped.
    public static func json(for config: TransformerConfig, as type: HFConfig.ModelType? = nil) throws -> [String: JSONValue] {
        let type = type ?? closestArchitecture(config)
        let arch = type.rawValue
        func refuse(_ field: String, _ message: String) -> SparseMoEError {
            .invalidConfig(field: field, message: "\(message): Hugging Face \(arch) cannot represent this")
        }
        try config.validate()
        guard let m = config.moe else {
            throw refuse("moe", "a dense model (no experts); the exporter writes mixture-of-experts architectures only")
        }
        guard config.positionEncoding == .rope else { throw refuse("position_encoding", "\(config.positionEncoding.rawValue) positions (only RoPE)") }
        guard config.norm == .rms else { throw refuse("norm", "LayerNorm (only RMSNorm)") }
        guard config.causal else { throw refuse("causal", "bidirectional attention") }
        guard config.ffnKind == .swiglu, m.expertKind == .swiglu else {
            throw refuse("ffn_kind", "\(config.ffnKind.rawValue) dense FFN / \(m.expertKind.rawValue) experts (only SwiGLU)")
        }
        guard m.capacityFactor == nil else { throw refuse("moe.capacity_factor", "a capacity limit with token dropping") }
        let wantRouter: RouterKind = type == .deepseekV3 ? .sigmoidBias : .softmaxTopK
        guard m.router == wantRouter else { throw refuse("moe.router", "router \(m.router.rawValue) (\(arch) uses \(wantRouter.rawValue))") }
        let wantNorm: QKNorm = type == .olmoe ? .full : type == .qwen3MoE ? .perHead : .none
        guard config.qkNorm == wantNorm else { throw refuse("qk_norm", "q/k norm \(config.qkNorm) (\(arch) has \(wantNorm))") }
        if config.attentionBias && type != .qwen2MoE { throw refuse("attention_bias", "q/k/v biases") }
        if (type == .deepseekV3) != (config.latentAttention != nil) {
            throw refuse("latent_attention", type == .deepseekV3 ? "grouped-query attention (DeepSeek-V3 uses MLA)" : "multi-head latent attention")
        }
        if type != .deepseekV3 {
            let expectedRope: RotaryStyle = .halfSplit
            guard config.ropeStyle == expectedRope else { throw refuse("rope_style", "interleaved RoPE") }
        }
        switch type {
        case .qwen2MoE:
            guard m.sharedExperts >= 1, m.sharedGating == .sigmoid else {
                throw refuse("moe.shared_experts", "\(m.sharedExperts) shared experts with \(m.sharedGating.rawValue) gating (Qwen2-MoE has one sigmoid-gated shared expert)")
            }
        case .deepseekV3:
            guard m.sharedGating == .none else { throw refuse("moe.shared_expert_gating", "gated shared experts") }
            if m.sharedExperts > 0 {
                guard m.sharedExpertHidden == m.sharedExperts * m.expertHidden else {
                    throw refuse("moe.shared_expert_intermediate_size", "\(m.sharedExpertHidden) ≠ shared_experts × expert width = \(m.sharedExperts * m.expertHidden)")
                }
            }
        default:
            guard m.sharedExperts == 0 else { throw refuse("moe.shared_experts", "shared experts") }
        }
        if type == .mixtral { guard m.normalizeTopK else { throw refuse("moe.norm_topk_prob", "false (Mixtral always renormalises)") } }

        var j: [String: JSONValue] = [:]
        j["model_type"] = .string(arch)
        j["architectures"] = .array([.string(causalLMClass(type))])
        j["dtype"] = .string("float32")
        j["vocab_size"] = .int(config.vocabSize)
        j["hidden_size"] = .int(config.hiddenSize)
        j["num_hidden_layers"] = .int(config.numLayers)
        j["num_attention_heads"] = .int(config.numHeads)
        j["num_key_value_heads"] = .int(config.latentAttention == nil ? config.numKVHeads : config.numHeads)
        j["max_position_embeddings"] = .int(config.maxSequenceLength)
        j["rms_norm_eps"] = number(config.normEps)
        j["rope_parameters"] = .object(["rope_theta": number(config.ropeTheta), "rope_type": .string("default")])
        j["rope_theta"] = number(config.ropeTheta)  // transformers 4 spelling
        j["tie_word_embeddings"] = .bool(config.tiedEmbeddings)
        j["hidden_act"] = .string("silu")
        j["initializer_range"] = number(config.initStd)
        j["num_experts_per_tok"] = .int(m.topK)
        j["router_aux_loss_coef"] = number(m.auxLossCoefficient)
        j["output_router_logits"] = .bool(false)
        j["use_cache"] = .bool(true)
        let sparse = (0..<config.numLayers).map { config.isMoELayer($0) }
        let allSparse = !sparse.contains(false)
        switch type {
        case .mixtral, .olmoe:
            guard allSparse else { throw refuse("moe.dense_layers", "dense layers \((0..<config.numLayers).filter { !sparse[$0] }) (every \(arch) layer is sparse)") }
            j["intermediate_size"] = .int(m.expertHidden)
            j["head_dim"] = .int(config.resolvedHeadDim)
            j["attention_bias"] = .bool(false)
            if type == .mixtral {
                j["num_local_experts"] = .int(m.numExperts)
                j["router_jitter_noise"] = number(m.jitter)
                j["sliding_window"] = .null
            } else {
                j["num_experts"] = .int(m.numExperts)
                j["norm_topk_prob"] = .bool(m.normalizeTopK)
                j["clip_qkv"] = .null
            }
        case .qwen2MoE, .qwen3MoE:
            // Qwen: layer i sparse iff (i+1) % step == 0 and i ∉ mlp_only_layers.
            let step = m.every
            let mlpOnly = (0..<config.numLayers).filter { !sparse[$0] && ($0 + 1) % step == 0 }
            j["intermediate_size"] = .int(config.intermediateSize)
            j["moe_intermediate_size"] = .int(m.expertHidden)
            j["num_experts"] = .int(m.numExperts)
            j["norm_topk_prob"] = .bool(m.normalizeTopK)
            j["decoder_sparse_step"] = .int(step)
            j["mlp_only_layers"] = .array(mlpOnly.map { .int($0) })
            j["use_sliding_window"] = .bool(false)
            j["sliding_window"] = .null
            if type == .qwen2MoE {
                if config.headDim != nil && config.resolvedHeadDim * config.numHeads != config.hiddenSize {
                    throw refuse("head_dim", "head_dim \(config.resolvedHeadDim) ≠ hidden_size / num_attention_heads")
                }
                j["shared_expert_intermediate_size"] = .int(m.sharedExpertHidden)
                j["qkv_bias"] = .bool(config.attentionBias)
            } else {
                j["head_dim"] = .int(config.resolvedHeadDim)
                j["attention_bias"] = .bool(false)
            }
        case .deepseekV3:
            let l = config.latentAttention!
            let firstK = sparse.firstIndex(of: true) ?? config.numLayers
            guard !sparse[firstK...].contains(false) else {
                throw refuse("moe.dense_layers", "dense layers after the first sparse one (DeepSeek-V3 has only first_k_dense_replace)")
            }
            if m.sharedExperts == 0 { throw refuse("moe.shared_experts", "0 shared experts (transformers' DeepSeek-V3 always builds n_shared_experts ≥ 1)") }
            j["intermediate_size"] = .int(config.intermediateSize)
            j["moe_intermediate_size"] = .int(m.expertHidden)
            j["n_routed_experts"] = .int(m.numExperts)
            j["n_shared_experts"] = .int(m.sharedExperts)
            j["norm_topk_prob"] = .bool(m.normalizeTopK)
            j["first_k_dense_replace"] = .int(firstK)
            j["n_group"] = .int(m.nGroup)
            j["topk_group"] = .int(m.topkGroup)
            j["routed_scaling_factor"] = number(m.routedScalingFactor)
            j["scoring_func"] = .string("sigmoid")
            j["topk_method"] = .string("noaux_tc")
            j["q_lora_rank"] = l.qLoraRank.map { .int($0) } ?? .null
            j["kv_lora_rank"] = .int(l.kvLoraRank)
            j["qk_rope_head_dim"] = .int(l.qkRopeHeadDim)
            j["qk_nope_head_dim"] = .int(l.qkNopeHeadDim)
            j["qk_head_dim"] = .int(l.qkNopeHeadDim + l.qkRopeHeadDim)
            j["head_dim"] = .int(l.qkRopeHeadDim)
            j["v_head_dim"] = .int(l.vHeadDim)
            j["rope_interleave"] = .bool(config.ropeStyle == .interleaved)
            j["attention_bias"] = .bool(false)
            j["num_nextn_predict_layers"] = .int(0)
        }
        // Check: reading the JSON back gives a configuration that computes the same logits.
        let data = try JSONEncoder().encode(JSONValue.object(j))
        let back = try HFConfig.decode(data, path: "config.json (\(arch) export)")
        let round = try back.transformerConfig(extras: HFConfigExtras(json: j))
        if let diff = logitsRelevantDifference(config, round) {
            throw refuse(diff.field, diff.message)
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
            check("moe.expert_intermediate_size", a.moe?.expertHidden, b.moe?.expertHidden),
            check("moe.router", a.moe?.router, b.moe?.router), check("moe.norm_topk_prob", a.moe?.normalizeTopK, b.moe?.normalizeTopK),
            check("moe.n_group", a.moe?.nGroup, b.moe?.nGroup), check("moe.topk_group", a.moe?.topkGroup, b.moe?.topkGroup),
            check("moe.routed_scaling_factor", a.moe?.routedScalingFactor, b.moe?.routedScalingFactor),
            check("moe.shared_experts", (a.moe?.sharedExperts ?? 0) > 0, (b.moe?.sharedExperts ?? 0) > 0),
            check("moe.shared_expert_intermediate_size", a.moe?.sharedExpertHidden, b.moe?.sharedExpertHidden),
            check("moe.shared_expert_gating", a.moe?.sharedGating, b.moe?.sharedGating),
        ]
        return checks.compactMap { $0 }.first
    }
}
