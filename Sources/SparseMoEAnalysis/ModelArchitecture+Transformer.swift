import SparseMoECore
import SparseMoENN
import SparseMoEModels

extension ModelArchitecture {
    /// The architecture a `TransformerConfig` builds, exactly as `TransformerLM(config:)`
    /// allocates it, so that `ModelAccounting(...).totalParams == TransformerLM(config:).parameterCount`:
    ///
    /// - token embedding [V, C]; learned position table [max_position_embeddings, C] with
    ///   `.learned` positions (rotary and sinusoidal positions store nothing); output head
    ///   [V, C] unless tied; final norm and two block norms per layer of `config.norm`.
    /// - attention: GQA with q/k/v biases when `attention_bias` (never on o_proj), q/k norms
    ///   per head or over the full projection, RoPE on every head dimension with `.rope`
    ///   positions; or latent attention (no biases, RoPE on the rotary dimensions).
    /// - feed-forward: layer i is MoE when `config.isMoELayer(i)`, else the dense FFN.
    ///   SwiGLU blocks (dense, experts, shared experts) have 3 matrices and no bias; the
    ///   GELU / GELU-tanh / ReLU MLP kinds have 2 matrices with biases [F] and [C] (experts:
    ///   [E, F] and [E, C]).
    /// - routers: one [E, C] gate (softmax top-k, Switch, expert choice, sigmoid-bias);
    ///   sigmoid-bias also stores its selection bias [E]; noisy top-k a second [E, C]
    ///   noise projection; hash routing nothing.
    /// - shared experts: one SwiGLU FFN of width `shared_expert_intermediate_size`, plus a
    ///   sigmoid gate [1, C] with `shared_expert_gating: sigmoid`.
    ///
    /// K is `top_k`, except for expert-choice routing, where a token is taken by
    /// `capacity_factor` experts on average (default K), rounded to an integer in 1...E.
    /// Throws what `config.validate()` throws.
    public init(transformer config: TransformerConfig, name: String = "transformer") throws {
        try config.validate()
        let c = config.hiddenSize
        let attention: AttentionArchitecture
        if let l = config.latentAttention {
            attention = .latent(LatentAttention(heads: config.numHeads, qLoraRank: l.qLoraRank, kvLoraRank: l.kvLoraRank,
                                                qkNopeHeadDim: l.qkNopeHeadDim, qkRopeHeadDim: l.qkRopeHeadDim,
                                                vHeadDim: l.vHeadDim, bias: false))
        } else {
            let d = config.resolvedHeadDim
            attention = .grouped(GroupedQueryAttention(heads: config.numHeads, kvHeads: config.numKVHeads, headDim: d,
                                                       qkvBias: config.attentionBias, outputBias: false, qkNorm: config.qkNorm,
                                                       ropeDims: config.positionEncoding == .rope ? d : 0))
        }
        let dense = DenseFeedForward(kind: config.ffnKind, intermediateSize: config.intermediateSize)
        let moe = config.moe.map { MixtureOfExperts(moe: $0) }
        let layers = (0..<config.numLayers).map { i in
            LayerArchitecture(attention: attention,
                              feedForward: config.isMoELayer(i) ? .mixture(moe!) : .dense(dense))
        }
        self.init(name: name, vocabSize: config.vocabSize, hiddenSize: c, tiedEmbeddings: config.tiedEmbeddings,
                  norm: config.norm, learnedPositions: config.positionEncoding == .learned ? config.maxSequenceLength : 0,
                  layers: layers)
    }
}

extension DenseFeedForward {
    /// The block `FeedForward(kind:hiddenSize:intermediateSize:)` builds: SwiGLU gated without bias, the
    /// MLP kinds ungated with biases (GELU-tanh costed as GELU).
    init(kind: FeedForwardKind, intermediateSize: Int) {
        switch kind {
        case .swiglu: self.init(intermediateSize: intermediateSize, gated: true, bias: false, activation: .silu)
        case .gelu, .geluTanh: self.init(intermediateSize: intermediateSize, gated: false, bias: true, activation: .gelu)
        case .relu: self.init(intermediateSize: intermediateSize, gated: false, bias: true, activation: .relu)
        }
    }
}

extension MixtureOfExperts {
    /// The MoE block `TransformerLM` builds from an `MoEConfig`.
    init(moe m: MoEConfig) {
        let topK: Int
        if m.router == .expertChoice {
            let perToken = (m.capacityFactor ?? Double(m.topK)).rounded()
            topK = Swift.max(1, Swift.min(m.numExperts, Int(perToken)))
        } else {
            topK = m.topK
        }
        let projections: Int
        switch m.router {
        case .hash: projections = 0
        case .noisyTopK: projections = 2
        case .softmaxTopK, .switchTop1, .expertChoice, .sigmoidBias: projections = 1
        }
        let hasShared = m.sharedExperts > 0
        self.init(numExperts: m.numExperts, topK: topK, expert: DenseFeedForward(kind: m.expertKind, intermediateSize: m.expertIntermediateSize),
                  routerBias: false, routerCorrectionBias: m.router == .sigmoidBias,
                  scoring: m.router == .sigmoidBias ? .sigmoid : .softmax,
                  shared: hasShared ? DenseFeedForward(kind: .swiglu, intermediateSize: m.sharedExpertIntermediateSize) : nil,
                  sharedExpertCount: m.sharedExperts, sharedGate: hasShared && m.sharedGating == .sigmoid,
                  routerProjections: projections)
    }
}
