import SparseMoECore
import SparseMoEModels

extension ModelArchitecture {
    /// The architecture a Hugging Face configuration describes, layer by layer, as
    /// transformers builds it (which layers are sparse, biases, q/k norms, MLA, shared
    /// experts). DeepSeek-V3's multi-token-prediction layers are not included
    /// (transformers neither builds nor loads them).
    public init(huggingFace c: HFConfig) throws {
        guard let activation = Activation(rawValue: c.hiddenAct) else {
            throw SparseMoEError.invalidConfig(field: "hidden_act", message: "'\(c.hiddenAct)' (supported: silu, gelu, relu)")
        }
        let attention: AttentionArchitecture
        switch c.modelType {
        case .mixtral:
            attention = .grouped(GroupedQueryAttention(heads: c.numAttentionHeads, kvHeads: c.numKeyValueHeads, headDim: c.headDim,
                                                       slidingWindow: c.slidingWindow))
        case .qwen2MoE:
            attention = .grouped(GroupedQueryAttention(heads: c.numAttentionHeads, kvHeads: c.numKeyValueHeads, headDim: c.headDim,
                                                       qkvBias: c.qkvBias))
        case .qwen3MoE:
            attention = .grouped(GroupedQueryAttention(heads: c.numAttentionHeads, kvHeads: c.numKeyValueHeads, headDim: c.headDim,
                                                       qkvBias: c.attentionBias, outputBias: c.attentionBias, qkNorm: .perHead))
        case .olmoe:
            attention = .grouped(GroupedQueryAttention(heads: c.numAttentionHeads, kvHeads: c.numKeyValueHeads, headDim: c.headDim,
                                                       qkvBias: c.attentionBias, outputBias: c.attentionBias, qkNorm: .full))
        case .deepseekV3:
            attention = .latent(LatentAttention(heads: c.numAttentionHeads, qLoraRank: c.qLoraRank, kvLoraRank: c.kvLoraRank!,
                                                qkNopeHeadDim: c.qkNopeHeadDim!, qkRopeHeadDim: c.qkRopeHeadDim!, vHeadDim: c.vHeadDim!,
                                                bias: c.attentionBias))
        }
        let expert = DenseFeedForward(hidden: c.expertIntermediateSize, activation: activation)
        let sharedWidth = c.sharedExpertWidth
        let moe = MixtureOfExperts(
            experts: c.numExperts, topK: c.numExpertsPerToken, expert: expert,
            routerCorrectionBias: c.modelType == .deepseekV3,  // transformers always stores e_score_correction_bias
            scoring: c.scoringFunc == "sigmoid" ? .sigmoid : .softmax,
            shared: sharedWidth > 0 ? DenseFeedForward(hidden: sharedWidth, activation: activation) : nil,
            sharedExpertCount: c.modelType == .deepseekV3 ? c.numSharedExperts : (sharedWidth > 0 ? 1 : 0),
            sharedGate: c.modelType == .qwen2MoE && sharedWidth > 0)
        let dense = DenseFeedForward(hidden: c.intermediateSize, activation: activation)
        let layers = (0..<c.numHiddenLayers).map { i in
            LayerArchitecture(attention: attention, feedForward: c.isSparseLayer(i) ? .mixture(moe) : .dense(dense))
        }
        self.init(name: c.modelType.rawValue, vocabSize: c.vocabSize, hiddenSize: c.hiddenSize,
                  tiedEmbeddings: c.tieWordEmbeddings, norm: .rms, layers: layers)
    }
}
