import SparseMoECore
import SparseMoEModels

extension ModelArchitecture {
    /// The architecture a Hugging Face configuration describes, layer by layer, as
    /// transformers builds it (which layers are sparse, biases, q/k norms, MLA, shared
    /// experts; the family says which in its `layout`). DeepSeek-V3's multi-token-prediction
    /// layers are not included (transformers neither builds nor loads them).
    public init(huggingFace config: any HuggingFaceFamily) throws {
        let c = config.common, layout = config.layout
        guard let activation = Activation(rawValue: c.hiddenAct) else {
            throw SparseMoEError.invalidConfig(field: "hidden_act", message: "'\(c.hiddenAct)' (supported: silu, gelu, relu)")
        }
        let attention: AttentionArchitecture
        switch layout.attention {
        case let .grouped(headDim, qkvBias, outputBias, qkNorm, slidingWindow):
            attention = .grouped(GroupedQueryAttention(heads: c.numAttentionHeads, kvHeads: c.numKeyValueHeads, headDim: headDim,
                                                       qkvBias: qkvBias, outputBias: outputBias, qkNorm: qkNorm,
                                                       slidingWindow: slidingWindow))
        case let .latent(l, bias):
            attention = .latent(LatentAttention(heads: c.numAttentionHeads, qLoraRank: l.qLoraRank, kvLoraRank: l.kvLoraRank,
                                                qkNopeHeadDim: l.qkNopeHeadDim, qkRopeHeadDim: l.qkRopeHeadDim, vHeadDim: l.vHeadDim,
                                                bias: bias))
        }
        let expert = DenseFeedForward(intermediateSize: config.expertIntermediateSize, activation: activation)
        let sharedWidth = layout.sharedExpertWidth
        let moe = MixtureOfExperts(
            numExperts: c.numExperts, topK: c.numExpertsPerToken, expert: expert,
            routerCorrectionBias: layout.routerCorrectionBias,
            scoring: layout.sigmoidScoring ? .sigmoid : .softmax,
            shared: sharedWidth > 0 ? DenseFeedForward(intermediateSize: sharedWidth, activation: activation) : nil,
            sharedExpertCount: sharedWidth > 0 ? layout.sharedExperts : 0,
            sharedGate: layout.sharedExpertGate && sharedWidth > 0)
        let dense = DenseFeedForward(intermediateSize: c.intermediateSize, activation: activation)
        let layers = (0..<c.numHiddenLayers).map { i in
            LayerArchitecture(attention: attention, feedForward: config.isSparseLayer(i) ? .mixture(moe) : .dense(dense))
        }
        self.init(name: c.modelType, vocabSize: c.vocabSize, hiddenSize: c.hiddenSize,
                  tiedEmbeddings: c.tieWordEmbeddings, norm: .rms, layers: layers)
    }
}
