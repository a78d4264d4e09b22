import SparseMoECore
import SparseMoENN

/// What a language-model forward pass returns.
public struct LMOutput {
    /// `[B, T, V]`.
    public var logits: Tensor
    /// Sum of all MoE layers' weighted auxiliary losses (differentiable scalar); nil if none.
    public var auxLoss: Tensor?
    /// What each MoE layer returned (routing decision, dispatch), nil for dense layers.
    /// Statistics: `TransformerLM.routingStatistics(_:)`; FLOPs: `ExecutedFLOPs` (SparseMoEAnalysis).
    public var moe: [MoEOutput?]
}

/// Per-call options of `TransformerLM.forward`.
public struct ForwardOptions {
    /// Training mode: noisy routers and jitter apply, aux-free router loads are counted.
    public var training: Bool = false
    /// Generator for router noise.
    public var rng: RandomGenerator = RandomGenerator(seed: 0)
    /// Incremental decoding cache; the input continues the cached positions.
    public var cache: KVCache?
    /// Compute the logits of the last position only (`[B, 1, V]`): what decoding needs, and
    /// for a long prompt the output projection's T·V·C multiply-adds shrink to V·C.
    public var lastPositionLogitsOnly: Bool
    /// What the blocks keep for backward when recording gradients (`ActivationCheckpointing`).
    public var checkpointing: ActivationCheckpointing
    /// Data-parallel training: the mean over replicas that makes the load-balancing loss
    /// global (`RoutingContext.replicaMean`); nil for single-process training.
    public var replicaMean: ((UnsafeMutableBufferPointer<Float>) throws -> Void)? = nil

    public init(training: Bool = false, rng: RandomGenerator = RandomGenerator(seed: 0), cache: KVCache? = nil,
                lastPositionLogitsOnly: Bool = false, checkpointing: ActivationCheckpointing = .none) {
        self.checkpointing = checkpointing
        self.training = training
        self.rng = rng
        self.cache = cache
        self.lastPositionLogitsOnly = lastPositionLogitsOnly
    }
}

/// A decoder (or, with `causal: false`, encoder) transformer language model with
/// optional MoE feed-forward layers:
///
///   x = embed(tokens) [+ positions];  x = block_i(x) for each layer;  logits = head(norm(x)).
///
/// Parameter names follow the Hugging Face layout (`model.embed_tokens.weight`,
/// `model.layers.{i}.…`, `model.norm.weight`, `lm_head.weight`).
public final class TransformerLM: Module {
    public let config: TransformerConfig
    public let embedTokens: Tensor
    public let positionTable: Tensor?
    public let blocks: [TransformerBlock]
    public let finalNorm: Norm
    /// Output projection `[V, C]`; nil when tied to `embedTokens`.
    public let lmHead: Tensor?
    let rotary: RotaryEmbedding?

    /// Builds a randomly initialised model (N(0, initStd²) truncated at ±2σ). Throws what
    /// `config.validate()` throws, and `invalidConfig` when the parameters would not fit in
    /// the memory available (`TransformerConfig.checkMemory`).
    public convenience init(config: TransformerConfig, seed: UInt64 = 0) throws {
        try config.validate()
        try config.checkMemory()
        var rng = RandomGenerator(seed: seed)
        try self.init(config: config, rng: &rng)
    }

    /// A model whose parameters are placeholders (zeros that take no memory until
    /// written): the skeleton that loading fills with a checkpoint's tensors, in their
    /// own storage dtypes, without initialising or holding float32 copies first.
    package static func placeholder(config: TransformerConfig) throws -> TransformerLM {
        var rng = RandomGenerator.placeholder()
        return try TransformerLM(config: config, rng: &rng)
    }

    init(config: TransformerConfig, rng: inout RandomGenerator) throws {
        try config.validate()
        self.config = config
        let c = config.hiddenSize, std = config.initStd
        embedTokens = Tensor.truncatedNormal([config.vocabSize, c], std: std, using: &rng, requiresGrad: true)
        positionTable = config.positionEncoding == .learned
            ? Tensor.truncatedNormal([config.maxSequenceLength, c], std: std, using: &rng, requiresGrad: true) : nil
        let rotary = config.positionEncoding == .rope
            ? RotaryEmbedding(theta: config.ropeTheta, rotaryDim: nil, style: config.ropeStyle) : nil
        self.rotary = rotary
        var blocks: [TransformerBlock] = []
        for i in 0..<config.numLayers {
            let attention: any AttentionLayer
            if let latent = config.latentAttention {
                attention = try LatentAttentionLayer(width: c, heads: config.numHeads, config: latent, norm: config.norm,
                                                     normEps: config.normEps, ropeTheta: config.ropeTheta,
                                                     ropeStyle: config.ropeStyle, initStd: std, rng: &rng)
            } else {
                attention = GroupedQueryAttentionLayer(
                    width: c, heads: config.numHeads, kvHeads: config.numKVHeads, headDim: config.resolvedHeadDim,
                    bias: config.attentionBias, qkNorm: config.qkNorm, norm: config.norm, normEps: config.normEps,
                    rotary: rotary, initStd: std, rng: &rng)
            }
            let ffn: FeedForwardBlock
            if config.isMoELayer(i), let m = config.moe {
                ffn = .moe(try TransformerLM.makeMoE(m, hiddenSize: c, rng: &rng))
            } else {
                ffn = .dense(try FeedForward(kind: config.ffnKind, hiddenSize: c, intermediateSize: config.intermediateSize, rng: &rng))
            }
            blocks.append(TransformerBlock(inputNorm: Norm(kind: config.norm, width: c, eps: config.normEps), attention: attention,
                                           postAttentionNorm: Norm(kind: config.norm, width: c, eps: config.normEps),
                                           feedForward: ffn))
        }
        self.blocks = blocks
        finalNorm = Norm(kind: config.norm, width: c, eps: config.normEps)
        lmHead = config.tiedEmbeddings ? nil
            : Tensor.truncatedNormal([config.vocabSize, c], std: std, using: &rng, requiresGrad: true)
    }

    static func makeMoE(_ m: MoEConfig, hiddenSize c: Int, rng: inout RandomGenerator) throws -> MoELayer {
        let router: any Router
        let capacity = try m.capacityFactor.map { try CapacityLimit(factor: $0, minimum: m.minCapacity, policy: m.dropPolicy, groups: m.capacityGroups) }
        switch m.router {
        case .softmaxTopK:
            router = try TopKRouter(hiddenSize: c, numExperts: m.numExperts, topK: m.topK, renormalize: m.normalizeTopK,
                                    routedScalingFactor: m.routedScalingFactor, capacity: capacity, jitter: m.jitter, rng: &rng)
        case .switchTop1:
            router = try TopKRouter.switchTop1(hiddenSize: c, numExperts: m.numExperts, capacityFactor: m.capacityFactor ?? 1.25,
                                               minimumCapacity: m.minCapacity, policy: m.dropPolicy, groups: m.capacityGroups,
                                               jitter: m.jitter, rng: &rng)
        case .noisyTopK:
            router = try NoisyTopKRouter(hiddenSize: c, numExperts: m.numExperts, topK: m.topK, rng: &rng)
        case .expertChoice:
            router = try ExpertChoiceRouter(hiddenSize: c, numExperts: m.numExperts, capacityFactor: m.capacityFactor ?? Double(m.topK), rng: &rng)
        case .sigmoidBias:
            router = try SigmoidBiasRouter(hiddenSize: c, numExperts: m.numExperts, topK: m.topK, nGroup: m.nGroup, topkGroup: m.topkGroup,
                                           normalize: m.normalizeTopK, routedScalingFactor: m.routedScalingFactor, rng: &rng)
        case .hash:
            router = try HashRouter(numExperts: m.numExperts)
        }
        let experts = try Experts(kind: m.expertKind, numExperts: m.numExperts, hiddenSize: c, intermediateSize: m.expertIntermediateSize, rng: &rng)
        let shared = m.sharedExperts > 0 ? try FeedForward(kind: .swiglu, hiddenSize: c, intermediateSize: m.sharedExpertIntermediateSize, rng: &rng) : nil
        let losses = try MoELossConfig(balanceCoefficient: m.auxLossCoefficient, sequenceLevel: m.sequenceLevelAuxLoss,
                                       zLossCoefficient: m.zLossCoefficient)
        return try MoELayer(router: router, experts: experts, shared: shared, sharedGating: m.sharedGating, losses: losses, rng: &rng)
    }

    public func namedParameters() -> [(name: String, tensor: Tensor)] {
        var p: [(name: String, tensor: Tensor)] = [("model.embed_tokens.weight", embedTokens)]
        if let pos = positionTable { p.append(("model.embed_positions.weight", pos)) }
        for (i, b) in blocks.enumerated() { p += prefixed("model.layers.\(i)", b.namedParameters()) }
        p += prefixed("model.norm", finalNorm.namedParameters())
        if let h = lmHead { p.append(("lm_head.weight", h)) }
        return p
    }

    /// The MoE layers, in order.
    public var moeLayers: [MoELayer] {
        blocks.compactMap { if case let .moe(m) = $0.feedForward { return m } else { return nil } }
    }

    /// tokens int32 `[B, T]` → logits `[B, T, V]` (`[B, 1, V]` with `lastPositionLogitsOnly`), auxiliary loss, each MoE layer's decision.
    public func forward(_ tokens: Tensor, options: ForwardOptions = ForwardOptions()) throws -> LMOutput {
        guard tokens.dtype == .int32, tokens.rank == 2 else {
            throw SparseMoEError.shapeMismatch(op: "TransformerLM", message: "tokens must be int32 [B, T], got \(tokens.dtype) \(tokens.shape)")
        }
        let (b, t) = (tokens.shape[0], tokens.shape[1])
        let start = options.cache?.length ?? 0
        guard b >= 1, t >= 1 else {
            throw SparseMoEError.invalidArgument(op: "TransformerLM", message: "token input is empty (shape \(tokens.shape)): give at least one token id")
        }
        guard start + t <= config.maxSequenceLength else {
            throw SparseMoEError.invalidArgument(op: "TransformerLM", message: "sequence positions \(start)..<\(start + t) exceed max_position_embeddings = \(config.maxSequenceLength)")
        }
        // Token ids are user data (a prompt, a token file): out-of-range ids throw here
        // rather than trap in the embedding op.
        try Check.embedding(embedTokens, tokens)
        let c = config.hiddenSize
        var x = embedding(embedTokens, tokens)
        switch config.positionEncoding {
        case .learned:
            let ids = Tensor(indices: (start..<(start + t)).map { Int32($0) }, shape: [t])
            let pos = embedding(positionTable!, ids)
            x = add(x.reshaped([b, t * c]), pos.reshaped([t * c])).reshaped([b, t, c])
        case .sinusoidal:
            x = addSinusoidalPositions(x, start: start)
        case .rope:
            break
        }
        // Latent attention rotates only its own qk_rope_head_dim features, with its own tables.
        let tables = config.latentAttention == nil ? rotary.map { $0.tables(start: start, count: t, headDim: config.resolvedHeadDim) } : nil
        let attentionContext = AttentionContext(start: start, rotary: tables,
                                                cache: options.cache, causal: config.causal)
        var routingContext = RoutingContext(training: options.training, rng: options.rng, tokenIds: tokens.reshaped([b * t]),
                                            sequenceLength: t)
        routingContext.replicaMean = options.replicaMean
        var aux: Tensor?
        var outputs: [MoEOutput?] = []
        for (i, block) in blocks.enumerated() {
            let (y, moe) = try block(x, layer: i, attentionContext: attentionContext, routingContext: &routingContext,
                                     checkpointing: options.checkpointing)
            x = y
            outputs.append(moe)
            if let a = moe?.auxLoss { aux = aux.map { add($0, a) } ?? a }
        }
        var h = finalNorm(x)
        if options.lastPositionLogitsOnly && t > 1 {
            let rows = h.reshaped([b * t, c])
            h = b == 1 ? rows.slice(rows: (t - 1)..<t) : concatLastAxis((0..<b).map { rows.slice(rows: ($0 * t + t - 1)..<($0 * t + t)) })
            h = h.reshaped([b, 1, c])
        }
        let logits = linearProjection(h, lmHead ?? embedTokens)
        return LMOutput(logits: logits, auxLoss: aux, moe: outputs)
    }

    /// Routing statistics per layer of one `forward` output (nil for dense layers).
    public func routingStatistics(_ output: LMOutput) -> [RoutingStatistics?] {
        zip(blocks, output.moe).map { block, moe in
            guard case let .moe(layer) = block.feedForward, let moe else { return nil }
            return RoutingStatistics(routing: moe.routing, router: layer.router)
        }
    }
}
