import SparseMoECore
import SparseMoENN
import SparseMoEModels
import SparseMoEAnalysis

/// Bytes of training memory, analytic, per layer and in total, for a model config, one
/// micro-batch of B sequences of T tokens and an `ActivationCheckpointing` mode. All
/// float32 (4 bytes) unless said; N = B·T tokens, C width, H heads, KV kv heads, D head
/// width, F (dense or expert) hidden width, E experts, K top-k, A = N·K assignments
/// (dropless upper bound), V vocabulary.
///
/// Model state per parameter: weight + gradient + AdamW m and v = 4 × 4 bytes.
///
/// Activations: what the forward's recorded graph keeps until backward — every op output
/// another recorded op takes as input, plus what ops save (read off the ops' recording
/// closures). Per layer, `none`:
///
///   attention  norm₁ N·C + rstd N; q, k, v N·(H + 2·KV)·D; RoPE outputs N·(H + KV)·D;
///              softmax probabilities B·H·T·T; attention output N·H·D; o_proj N·C;
///              residual h N·C                                            (qk-norms, biases: + their outputs)
///   dense FFN  norm₂ N·C + N; SwiGLU gate, up, silu·up 3·N·F (MLP: fc1, act 2·N·F, +N·F bias); down N·C; y N·C
///   MoE        norm₂ N·C + N; router logits N·E, softmax N·E, gates + a zero copy 2·N·K, indices N·K int32;
///              routedExperts output N·C and its saved workspace A·(2C + 2F) (+ A·F SwiGLU);
///              dispatch plan 2·A int32; shared expert as a dense FFN of F_s, + N·C for the sum; y N·C
///
/// `attention`: the attention sublayer keeps only its output N·C and h N·C. `block`: a
/// layer keeps its output y N·C (the next block's saved input) and what the layer returns
/// besides the graph: the MoE output N·C and routing (logits, probabilities N·E each, gates
/// N·K, indices N·K int32). Head: embedding output N·C, final norm N·C + N, logits N·V,
/// cross-entropy log-sum-exp N and targets N int32.
///
/// While backward runs, `block` recomputes one layer at a time (`recomputeBytes`: the
/// largest layer's `none` activations; `attention`: the largest attention sublayer), and
/// the logits' gradient N·V is allocated (`backwardBytes` counts both).
///
/// Measured against the bytes the tensor pool holds after a forward (`StoragePool.liveBytes`,
/// see the tests) within 10 % for small configs; allocator rounding and the process's own
/// footprint (code, BLAS and thread buffers, the data set) come on top of it in peak RSS.
public struct TrainingMemoryEstimate: Sendable, Equatable, Codable {
    /// One row: a transformer layer, or the embedding + head.
    public struct Row: Sendable, Equatable, Codable {
        /// "embed+head" or the layer index.
        public var name: String
        /// "dense", "moe" or "" (embedding and head).
        public var kind: String
        public var parameters: Int
        /// Weights, gradients and AdamW moments: 16 bytes per parameter.
        public var stateBytes: Int
        /// Activations kept for backward in the chosen mode.
        public var activationBytes: Int
        /// Activations kept for backward without checkpointing, for comparison.
        public var activationBytesWithoutCheckpointing: Int

        enum CodingKeys: String, CodingKey {
            case name, kind, parameters, stateBytes = "state_bytes", activationBytes = "activation_bytes"
            case activationBytesWithoutCheckpointing = "activation_bytes_without_checkpointing"
        }
    }

    public var batchSize: Int
    public var sequenceLength: Int
    public var checkpointing: ActivationCheckpointing
    public var rows: [Row]
    /// Transient during backward: one recomputed layer (or attention sublayer) and the logits' gradient.
    public var backwardBytes: Int

    public var parameters: Int { rows.reduce(0) { $0 + $1.parameters } }
    /// Weights + gradients + AdamW moments.
    public var stateBytes: Int { rows.reduce(0) { $0 + $1.stateBytes } }
    public var activationBytes: Int { rows.reduce(0) { $0 + $1.activationBytes } }
    public var activationBytesWithoutCheckpointing: Int { rows.reduce(0) { $0 + $1.activationBytesWithoutCheckpointing } }
    /// State + activations + the backward transient: the analytic peak.
    public var totalBytes: Int { stateBytes + activationBytes + backwardBytes }

    enum CodingKeys: String, CodingKey {
        case batchSize = "batch_size", sequenceLength = "sequence_length", checkpointing, rows
        case backwardBytes = "backward_bytes"
    }

    /// The estimate for `model` trained on `batchSize` × `sequenceLength` tokens per micro-batch.
    /// Throws what `ModelAccounting` throws for an invalid config.
    public init(model: TransformerConfig, batchSize: Int, sequenceLength: Int, checkpointing: ActivationCheckpointing) throws {
        guard batchSize >= 1 else { throw SparseMoEError.invalidConfig(field: "batch_size", message: "must be ≥ 1, got \(batchSize)") }
        guard sequenceLength >= 1 else { throw SparseMoEError.invalidConfig(field: "sequence_length", message: "must be ≥ 1, got \(sequenceLength)") }
        let accounting = try ModelAccounting(try ModelArchitecture(transformer: model), sequenceLength: sequenceLength)
        self.batchSize = batchSize
        self.sequenceLength = sequenceLength
        self.checkpointing = checkpointing
        let floats = Self.layerFloats(model, batch: batchSize, sequence: sequenceLength)
        let n = batchSize * sequenceLength, c = model.hiddenSize
        var rows: [Row] = []
        var recompute = 0
        for layer in accounting.layers {
            let f = floats(model.isMoELayer(layer.index))
            let kept: Int
            switch checkpointing {
            case .none: kept = f.attention + f.feedForward
            case .attention: kept = 2 * n * c + f.feedForward
            case .block: kept = n * c + f.returned
            }
            recompute = max(recompute, checkpointing == .block ? f.attention + f.feedForward : checkpointing == .attention ? f.attention : 0)
            rows.append(Row(name: "\(layer.index)", kind: layer.feedForward, parameters: layer.totalParams,
                            stateBytes: 16 * layer.totalParams, activationBytes: 4 * kept,
                            activationBytesWithoutCheckpointing: 4 * (f.attention + f.feedForward)))
        }
        let outside = accounting.totalParams - accounting.layers.reduce(0) { $0 + $1.totalParams }
        let head = n * c + (n * c + Self.normSaved(model, rows: n)) + n * model.vocabSize + n + n  // + targets (int32)
        rows.append(Row(name: "embed+head", kind: "", parameters: outside, stateBytes: 16 * outside,
                        activationBytes: 4 * head, activationBytesWithoutCheckpointing: 4 * head))
        self.rows = rows
        backwardBytes = 4 * (recompute + n * model.vocabSize)
    }

    /// Floats saved by a norm over `rows` rows: RMSNorm keeps 1/rms, LayerNorm mean and 1/σ.
    static func normSaved(_ model: TransformerConfig, rows: Int) -> Int { model.norm == .rms ? rows : 2 * rows }

    /// Per layer kind (MoE or not): floats kept by the attention half, the feed-forward half
    /// (residual outputs included), and, under `block`, what the layer returns outside the graph.
    static func layerFloats(_ m: TransformerConfig, batch b: Int, sequence t: Int)
        -> (Bool) -> (attention: Int, feedForward: Int, returned: Int) {
        let n = b * t, c = m.hiddenSize, h = m.numHeads, kv = m.numKVHeads, d = m.resolvedHeadDim
        let norm = n * c + normSaved(m, rows: n)
        var attention: Int
        if let l = m.latentAttention {
            // Latent attention (approximation): q, compressed kv, expanded k and v, RoPE parts.
            let qk = l.qkNopeHeadDim + l.qkRopeHeadDim
            attention = norm + n * h * qk * 3 + n * (l.kvLoraRank + l.qkRopeHeadDim) * 2 + n * h * (l.qkNopeHeadDim + l.vHeadDim) * 2
                + n * h * l.vHeadDim + b * h * t * t + 2 * n * c
        } else {
            let qkv = n * (h + 2 * kv) * d
            attention = norm + qkv + b * h * t * t + n * h * d + 2 * n * c
            if m.attentionBias { attention += qkv }
            if m.positionEncoding == .rope { attention += n * (h + kv) * d }
            if m.qkNorm != .none { attention += n * (h + kv) * d + normSaved(m, rows: m.qkNorm == .perHead ? n * (h + kv) : 2 * n) }
        }
        func ffn(_ kind: FeedForwardKind, _ f: Int) -> Int {
            kind == .swiglu ? 3 * n * f + n * c : 3 * n * f + 2 * n * c  // MLP: fc1, +bias, act; fc2, +bias
        }
        let dense = norm + ffn(m.ffnKind, m.intermediateSize) + n * c
        return { isMoE in
            guard isMoE, let moe = m.moe else { return (attention, dense, 0) }
            let (e, k, f) = (moe.numExperts, moe.topK, moe.expertIntermediateSize)
            let a = n * k
            let slots = moe.router == .expertChoice ? n * e : a
            var router = 2 * n * e + 3 * slots  // logits, probabilities; gates, zero copy, indices (int32)
            if moe.jitter > 0 { router += 2 * n * c }          // the noise and the jittered input
            if moe.router == .noisyTopK { router += 3 * n * e } // noise logits, noise, noisy logits
            if moe.capacityFactor != nil { router += slots }   // indices after dropping
            if moe.zLossCoefficient > 0 { router += n }         // log-sum-exp per token
            let experts = n * c + a * (2 * c + (moe.expertKind == .swiglu ? 3 : 2) * f) + 2 * a
            var shared = 0
            if moe.sharedExperts > 0 {
                shared = ffn(.swiglu, moe.sharedExpertIntermediateSize) + n * c
                if moe.sharedGating == .sigmoid { shared += n }
            }
            let returned = n * c + 2 * n * e + 2 * slots
            return (attention, norm + router + experts + shared + n * c, returned)
        }
    }
}
