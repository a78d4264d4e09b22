import Foundation
import SparseMoECore
import SparseMoENN

/// Exact parameter and FLOP accounting of a `ModelArchitecture`.
///
/// - Total parameters: every weight, bias, norm and buffer the model stores (the
///   output head counted once when tied to the embedding).
/// - Active parameters per token: everything outside the routed experts, plus K
///   routed experts and the shared experts of each MoE layer (embedding and head
///   included, as in the published Mixtral "12.9B active").
/// - Forward FLOPs per token (`FLOPCounts`): matrix products 2·m·n·k; attention
///   score/value products for sequence length T, causal (headline) and full.
/// - Training FLOPs per token: 3 × forward matrix-product FLOPs (backward = 2 × forward).
/// - Dense comparisons: `denseSameActive` and `denseSameTotal` (see `DenseEquivalent`).
public struct ModelAccounting: Sendable, Equatable, Codable {
    public var name: String
    /// T, the sequence length the attention terms are evaluated at.
    public var sequenceLength: Int
    public var totalParams: Int
    public var activeParams: Int
    public var params: ParameterCounts
    public var activeParamsBreakdown: ParameterCounts
    /// Per-token forward FLOPs of the whole model by component.
    public var flops: FLOPCounts
    /// Matrix-product FLOPs per token, causal attention.
    public var forwardFlopsPerToken: Double
    public var forwardFlopsPerTokenFullAttention: Double
    public var nonMatmulFlopsPerToken: Double
    public var trainingFlopsPerToken: Double
    public var trainingFlopsPerTokenFullAttention: Double
    public var moeLayers: Int
    public var layers: [LayerAccounting]
    public var denseSameActive: DenseEquivalent?
    public var denseSameTotal: DenseEquivalent?

    /// Accounts `architecture` at sequence length `sequenceLength` (≥ 1).
    public init(_ architecture: ModelArchitecture, sequenceLength: Int, costs: NonMatmulCosts = NonMatmulCosts()) throws {
        try self.init(architecture, sequenceLength: sequenceLength, costs: costs, withDenseEquivalents: true)
    }

    init(_ a: ModelArchitecture, sequenceLength: Int, costs: NonMatmulCosts, withDenseEquivalents: Bool) throws {
        try Self.validate(a, sequenceLength: sequenceLength)
        let counter = Counter(c: a.hiddenSize, norm: a.norm, costs: costs, t: sequenceLength)
        let c = a.hiddenSize
        var params = ParameterCounts(), active = ParameterCounts(), flops = FLOPCounts()

        // Embedding (+ learned positions), final norm, head.
        params.embedding = a.vocabSize * c + a.learnedPositions * c
        params.norms = a.norm.parameters(width: c)
        params.head = a.tiedEmbeddings ? 0 : a.vocabSize * c
        active = params
        flops.head = 2 * Double(c) * Double(a.vocabSize)
        flops.nonMatmul = counter.normFlops(c) + (a.learnedPositions > 0 ? Double(c) : 0)

        var layers: [LayerAccounting] = []
        for (i, layer) in a.layers.enumerated() {
            let acc = counter.layer(i, layer)
            layers.append(acc)
            params = params + acc.params
            active = active + acc.activeParamsBreakdown
            flops = flops + acc.flops
        }
        name = a.name
        self.sequenceLength = sequenceLength
        self.params = params
        activeParamsBreakdown = active
        totalParams = params.total
        activeParams = active.total
        self.flops = flops
        forwardFlopsPerToken = flops.forward
        forwardFlopsPerTokenFullAttention = flops.forwardFullAttention
        nonMatmulFlopsPerToken = flops.nonMatmul
        trainingFlopsPerToken = 3 * flops.forward
        trainingFlopsPerTokenFullAttention = 3 * flops.forwardFullAttention
        moeLayers = a.layers.filter { $0.feedForward.isMixture }.count
        self.layers = layers
        if withDenseEquivalents {
            denseSameActive = try Self.denseEquivalent(of: a, target: activeParams, sparse: self, costs: costs)
            denseSameTotal = try Self.denseEquivalent(of: a, target: totalParams, sparse: self, costs: costs)
        }
    }

    static func validate(_ a: ModelArchitecture, sequenceLength: Int) throws {
        func check(_ ok: Bool, _ field: String, _ message: String) throws {
            if !ok { throw SparseMoEError.invalidConfig(field: field, message: message) }
        }
        try check(sequenceLength >= 1, "sequence_length", "must be ≥ 1, found \(sequenceLength)")
        try check(a.vocabSize > 0, "vocab_size", "must be positive, found \(a.vocabSize)")
        try check(a.hiddenSize > 0, "hidden_size", "must be positive, found \(a.hiddenSize)")
        try check(a.learnedPositions >= 0, "learned_positions", "must be ≥ 0")
        for (i, l) in a.layers.enumerated() {
            switch l.attention {
            case let .grouped(g):
                try check(g.heads > 0 && g.kvHeads > 0 && g.headDim > 0 && g.heads % g.kvHeads == 0, "layers[\(i)].attention",
                          "heads \(g.heads), kv heads \(g.kvHeads), head dim \(g.headDim): all positive, kv heads dividing heads")
                try check((g.slidingWindow ?? 1) > 0, "layers[\(i)].attention.sliding_window", "must be positive")
                try check(g.ropeDims >= 0 && g.ropeDims <= g.headDim, "layers[\(i)].attention.rope_dims", "\(g.ropeDims) outside 0...\(g.headDim)")
            case let .latent(m):
                try check(m.heads > 0 && m.kvLoraRank > 0 && m.qkNopeHeadDim >= 0 && m.qkRopeHeadDim >= 0 && m.vHeadDim > 0
                          && (m.qLoraRank ?? 1) > 0, "layers[\(i)].attention", "latent attention sizes must be positive")
            }
            switch l.feedForward {
            case let .dense(d):
                try check(d.intermediateSize > 0, "layers[\(i)].feed_forward.intermediate_size", "must be positive, found \(d.intermediateSize)")
            case let .mixture(m):
                try check(m.numExperts > 0 && m.topK > 0 && m.topK <= m.numExperts, "layers[\(i)].feed_forward",
                          "num_experts \(m.numExperts), top_k \(m.topK): need 1 ≤ K ≤ E")
                try check(m.expert.intermediateSize > 0 && (m.shared?.intermediateSize ?? 1) > 0, "layers[\(i)].feed_forward.intermediate_size", "expert widths must be positive")
                try check((0...2).contains(m.routerProjections), "layers[\(i)].feed_forward.router_projections",
                          "must be 0, 1 or 2, found \(m.routerProjections)")
            }
        }
    }

    /// The dense model whose MoE blocks are each one MLP of the width that brings the
    /// parameter count nearest to `target`.
    static func denseEquivalent(of a: ModelArchitecture, target: Int, sparse: ModelAccounting,
                                costs: NonMatmulCosts) throws -> DenseEquivalent? {
        let moeIndices = a.layers.indices.filter { a.layers[$0].feedForward.isMixture }
        guard !moeIndices.isEmpty else { return nil }
        // Parameters outside the MoE blocks are the same in both models.
        let moeBlockParams = moeIndices.reduce(0) { s, i in
            let p = sparse.layers[i].params
            return s + p.router + p.routedExperts + p.sharedExperts
        }
        let rest = sparse.totalParams - moeBlockParams
        // Each replacement MLP has params(F) = perUnit·F + fixed; use the first MoE block's expert style.
        guard case let .mixture(m0) = a.layers[moeIndices[0]].feedForward else { preconditionFailure() }
        let style = m0.expert
        let c = a.hiddenSize
        let perUnit = style.matrices * c + (style.bias ? style.matrices - 1 : 0)
        let fixed = style.bias ? c : 0
        let n = moeIndices.count
        let raw = Double(target - rest - n * fixed) / Double(n * perUnit)
        let width = max(1, Int(raw.rounded()))
        var dense = a
        for i in moeIndices {
            dense.layers[i].feedForward = .dense(DenseFeedForward(intermediateSize: width, gated: style.gated, bias: style.bias, activation: style.activation))
        }
        dense.name = a.name + "-dense"
        let acc = try ModelAccounting(dense, sequenceLength: sparse.sequenceLength, costs: costs, withDenseEquivalents: false)
        return DenseEquivalent(targetParams: target, intermediateSize: width, totalParams: acc.totalParams,
                               forwardFlopsPerToken: acc.forwardFlopsPerToken, trainingFlopsPerToken: acc.trainingFlopsPerToken,
                               sparseToDenseFlopRatio: sparse.forwardFlopsPerToken / acc.forwardFlopsPerToken,
                               sparseToDenseParamRatio: Double(sparse.totalParams) / Double(acc.totalParams))
    }
}

/// Per-component arithmetic, one layer at a time.
private struct Counter {
    let c: Int
    let norm: NormKind
    let costs: NonMatmulCosts
    let t: Int

    var keysFull: Double { Double(t) }
    var keysCausal: Double { Double(t + 1) / 2 }

    /// Mean keys per position under a causal mask limited to a window of `w`:
    /// (1/T)·Σᵢ₌₁..T min(i, w).
    func keysCausal(window w: Int?) -> Double {
        guard let w, w < t else { return keysCausal }
        return (Double(w) * Double(w + 1) / 2 + Double(t - w) * Double(w)) / Double(t)
    }

    func normFlops(_ width: Int) -> Double { costs.norm(norm) * Double(width) }

    func layer(_ index: Int, _ layer: LayerArchitecture) -> LayerAccounting {
        var params = ParameterCounts(), active = ParameterCounts(), flops = FLOPCounts()
        params.norms = layer.normsPerLayer * norm.parameters(width: c)
        flops.nonMatmul = Double(layer.normsPerLayer) * normFlops(c) + 2 * Double(c)  // norms + two residual adds
        attention(layer.attention, &params, &flops)
        let kind: String
        switch layer.feedForward {
        case let .dense(d):
            kind = "dense"
            params.denseFeedForward = mlpParams(d)
            flops.denseFeedForward = mlpMatmul(d)
            flops.nonMatmul += mlpElementwise(d)
            active = params
        case let .mixture(m):
            kind = "moe"
            let e = Double(m.numExperts), k = Double(m.topK), cc = Double(c)
            let routed = m.routerProjections > 0  // a parameter-free (hash) router has no logits to compute or score
            params.router = m.routerProjections * c * m.numExperts + (m.routerBias ? m.numExperts : 0) + (m.routerCorrectionBias ? m.numExperts : 0)
            params.routedExperts = m.numExperts * mlpParams(m.expert)
            params.sharedExperts = (m.shared.map(mlpParams) ?? 0) + (m.sharedGate ? c : 0)
            flops.router = routed ? 2 * cc * e : 0
            flops.routedExperts = k * mlpMatmul(m.expert)
            flops.sharedExperts = (m.shared.map(mlpMatmul) ?? 0) + (m.sharedGate ? 2 * cc : 0)
            var elementwise = (m.routerBias ? e : 0) + (m.routerCorrectionBias ? e : 0)
            if routed { elementwise += (m.scoring == .softmax ? costs.softmax : costs.sigmoid) * e }
            elementwise += 2 * k  // renormalise / scale the K weights
            elementwise += k * mlpElementwise(m.expert) + 2 * k * cc  // experts, weighted combine
            if let s = m.shared {
                elementwise += mlpElementwise(s) + cc  // shared MLP, add into the output
                if m.sharedGate { elementwise += costs.sigmoid + cc }  // σ(gate) and the scaling
            }
            flops.nonMatmul += elementwise
            active = params
            active.routedExperts = m.topK * mlpParams(m.expert)
        }
        return LayerAccounting(index: index, feedForward: kind, params: params, activeParamsBreakdown: active, flops: flops)
    }

    func attention(_ attention: AttentionArchitecture, _ params: inout ParameterCounts, _ flops: inout FLOPCounts) {
        let cc = Double(c)
        switch attention {
        case let .grouped(g):
            let q = g.heads * g.headDim, kv = g.kvHeads * g.headDim
            var p = c * q + 2 * c * kv + q * c
            if g.qkvBias { p += q + 2 * kv }
            if g.outputBias { p += c }
            var elementwise = Double(g.qkvBias ? q + 2 * kv : 0) + Double(g.outputBias ? c : 0)
            switch g.qkNorm {
            case .none: break
            case .perHead:
                p += 2 * norm.parameters(width: g.headDim)
                elementwise += normFlops(q + kv)
            case .full:
                p += norm.parameters(width: q) + norm.parameters(width: kv)
                elementwise += normFlops(q + kv)
            }
            params.attention = p
            flops.attentionProjections = 2 * cc * Double(q + 2 * kv) + 2 * Double(q) * cc
            flops.attentionScoresFull = 4 * Double(q) * keysFull  // q·kᵀ and p·v, D each per head
            flops.attentionScoresCausal = 4 * Double(q) * keysCausal(window: g.slidingWindow)
            elementwise += costs.rope * Double((g.heads + g.kvHeads) * g.ropeDims)
            elementwise += costs.softmax * Double(g.heads) * keysCausal(window: g.slidingWindow)
            flops.nonMatmul += elementwise
        case let .latent(m):
            let h = m.heads, dqk = m.qkNopeHeadDim + m.qkRopeHeadDim
            var p = 0
            var proj = 0.0
            var elementwise = 0.0
            if let rq = m.qLoraRank {
                p += c * rq + (m.bias ? rq : 0) + norm.parameters(width: rq) + rq * h * dqk
                proj += 2 * cc * Double(rq) + 2 * Double(rq * h * dqk)
                elementwise += normFlops(rq) + (m.bias ? Double(rq) : 0)
            } else {
                p += c * h * dqk
                proj += 2 * cc * Double(h * dqk)
            }
            let kva = m.kvLoraRank + m.qkRopeHeadDim
            p += c * kva + (m.bias ? kva : 0) + norm.parameters(width: m.kvLoraRank)
            p += m.kvLoraRank * h * (m.qkNopeHeadDim + m.vHeadDim)
            p += h * m.vHeadDim * c + (m.bias ? c : 0)
            proj += 2 * cc * Double(kva) + 2 * Double(m.kvLoraRank * h * (m.qkNopeHeadDim + m.vHeadDim)) + 2 * Double(h * m.vHeadDim) * cc
            elementwise += normFlops(m.kvLoraRank) + (m.bias ? Double(kva + c) : 0)
            elementwise += costs.rope * Double(h * m.qkRopeHeadDim + m.qkRopeHeadDim)
            elementwise += costs.softmax * Double(h) * keysCausal
            params.attention = p
            flops.attentionProjections = proj
            flops.attentionScoresFull = 2 * Double(h * (dqk + m.vHeadDim)) * keysFull
            flops.attentionScoresCausal = 2 * Double(h * (dqk + m.vHeadDim)) * keysCausal
            flops.nonMatmul += elementwise
        }
    }

    func mlpParams(_ d: DenseFeedForward) -> Int {
        d.matrices * c * d.intermediateSize + (d.bias ? (d.matrices - 1) * d.intermediateSize + c : 0)
    }

    func mlpMatmul(_ d: DenseFeedForward) -> Double {
        2 * Double(c) * Double(d.intermediateSize) * Double(d.matrices)
    }

    func mlpElementwise(_ d: DenseFeedForward) -> Double {
        Double(d.intermediateSize) * (costs.activation(d.activation) + (d.gated ? 1 : 0))
            + (d.bias ? Double((d.matrices - 1) * d.intermediateSize + c) : 0)
    }
}

extension ModelAccounting {
    /// One JSON object with snake_case keys (`total_params`, `active_params`,
    /// `forward_flops_per_token`, `training_flops_per_token`, `dense_same_active`,
    /// `dense_same_total`, `layers`, ...), keys sorted.
    public func jsonData(pretty: Bool = false) throws -> Data {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted] : [.sortedKeys]
        return try encoder.encode(self)
    }
}
