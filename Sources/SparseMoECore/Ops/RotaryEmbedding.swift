internal import CMoEKernels

/// How RoPE pairs the features of a head that rotate together.
public enum RotaryStyle: String, Sendable, Codable, CaseIterable {
    /// Pairs (i, i + R/2): Hugging Face `rotate_half` (Llama, Mixtral, Qwen, GPT-NeoX).
    case halfSplit
    /// Pairs (2i, 2i + 1): GPT-J and Meta's original Llama (complex multiplication).
    case interleaved

    var cValue: Int32 { self == .halfSplit ? 0 : 1 }
}

/// Rotary position embedding (Su et al. 2021) for tensors `[B, T, H, D]`.
///
/// Feature pair i of the first `rotaryDim` features (R, even, ≤ D) is rotated by the
/// angle `pos · invFreq[i]`, `invFreq[i] = theta^(−2i/R)`, with `pos = start + t`;
/// features R..<D pass through (partial rotary). For a pair (a, b):
/// `a' = a·cos − b·sin`, `b' = b·cos + a·sin`. The angles follow transformers'
/// float32 recipe (float32 inverse frequencies, float32 product, float32 cos/sin), so
/// results match its RoPE to float32 rounding. Backward rotates by the negative angle.
///
/// Cost: O(T·R) transcendental functions for the tables, O(B·T·H·D) for the rotation.
public struct RotaryEmbedding: Sendable, Equatable {
    /// Base of the frequencies (10 000 in the paper, 1 000 000 in some long-context models).
    public var theta: Float
    /// Rotated features per head; nil means the whole head.
    public var rotaryDim: Int?
    public var style: RotaryStyle

    public init(theta: Float = 10000, rotaryDim: Int? = nil, style: RotaryStyle = .halfSplit) {
        self.theta = theta
        self.rotaryDim = rotaryDim
        self.style = style
    }

    /// Inverse frequencies `[R/2]`: `1 / theta^(2i/R)` in float32.
    public func inverseFrequencies(headDim: Int) -> Tensor {
        let r = Check.trapping { try Check.rotaryWidth(self, headDim: headDim, "rope") }
        let inv = Tensor(zeros: [r / 2])
        moe_rope_inv_freq(inv.floats, Int64(r), theta)
        return inv
    }

    /// Cosine and sine tables `[count, R/2]` for positions `start ..< start + count`.
    public func tables(start: Int, count: Int, headDim: Int) -> (cos: Tensor, sin: Tensor) {
        Check.trapping { try Check.rotaryTables(self, start: start, count: count, headDim: headDim) }
        let inv = inverseFrequencies(headDim: headDim)
        let half = inv.count
        let c = Tensor(zeros: [count, half]), s = Tensor(zeros: [count, half])
        if count * half > 0 {
            moe_rope_tables(c.floats, s.floats, inv.floats, Int64(start), Int64(count), Int64(half * 2))
        }
        return (c, s)
    }

    /// Cosine and sine tables `[Σ countᵢ, R/2]` for several runs of positions
    /// `startᵢ ..< startᵢ + countᵢ`, one after another (the sequences of a ragged batch):
    /// the rows `tables(start: startᵢ, count: countᵢ, …)` would give, in one pair of tensors.
    public func tables(runs: [(start: Int, count: Int)], headDim: Int) -> (cos: Tensor, sin: Tensor) {
        for r in runs { Check.trapping { try Check.rotaryTables(self, start: r.start, count: r.count, headDim: headDim) } }
        let inv = inverseFrequencies(headDim: headDim)
        let half = inv.count
        let total = runs.reduce(0) { $0 + $1.count }
        let c = Tensor(uninitialized: [total, half]), s = Tensor(uninitialized: [total, half])
        var row = 0
        for r in runs where r.count * half > 0 {
            moe_rope_tables(c.floats + row * half, s.floats + row * half, inv.floats, Int64(r.start), Int64(r.count), Int64(half * 2))
            row += r.count
        }
        return (c, s)
    }

    /// Rotates `x` `[B, T, H, D]` whose token t sits at position `start + t`.
    public func callAsFunction(_ x: Tensor, start: Int = 0) -> Tensor {
        Check.trapping { try Check.rope(self, x, start: start) }
        let (cosT, sinT) = tables(start: start, count: x.shape[1], headDim: x.shape[3])
        return apply(x, cos: cosT, sin: sinT)
    }

    /// Rotates `x` `[B, T, H, D]` with precomputed `tables(start:count:headDim:)`
    /// (`cos`, `sin` `[T, R/2]`), so that one table serves queries and keys of every layer.
    public func apply(_ x: Tensor, cos cosT: Tensor, sin sinT: Tensor) -> Tensor {
        let op = "rope"
        let r = Check.trapping { try Check.rotaryApply(self, x, cos: cosT, sin: sinT) }
        let (b, t, h, d) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let out = Tensor(uninitialized: x.shape)
        let style = self.style.cValue
        if x.count > 0 {
            moe_rope_forward(out.floats, x.floats, cosT.floats, sinT.floats,
                             Int64(b), Int64(t), Int64(h), Int64(d), Int64(r), style)
        }
        return out.recording(op, inputs: [x]) { g in
            guard x.requiresGrad, x.count > 0 else { return }
            let dx = x.gradForWriting()
            moe_rope_backward(dx.floats, g.floats, cosT.floats, sinT.floats,
                              Int64(b), Int64(t), Int64(h), Int64(d), Int64(r), style, dx.fresh ? 1 : 0)
        }
    }
}

/// Rotary position embedding of `x` `[B, T, H, D]` (see `RotaryEmbedding`).
/// `start` is the position of token 0 (the KV-cache length when decoding).
public func rope(_ x: Tensor, start: Int = 0, theta: Float = 10000, rotaryDim: Int? = nil,
                 style: RotaryStyle = .halfSplit) -> Tensor {
    RotaryEmbedding(theta: theta, rotaryDim: rotaryDim, style: style)(x, start: start)
}

extension Check {
    /// The rotary width R for a head of size `headDim`: even, in 2...headDim; theta positive.
    package static func rotaryWidth(_ rotary: RotaryEmbedding, headDim: Int, _ op: String) throws -> Int {
        let r = rotary.rotaryDim ?? headDim
        try Check.argument(r > 0 && r % 2 == 0 && r <= headDim, op,
                           "rotaryDim must be even and in 2...\(headDim) (head size), got \(r)")
        try Check.argument(rotary.theta.isFinite && rotary.theta > 0, op, "theta must be positive and finite, got \(rotary.theta)")
        return r
    }

    /// The arguments of `RotaryEmbedding.tables`: start, count ≥ 0 and a valid width.
    package static func rotaryTables(_ rotary: RotaryEmbedding, start: Int, count: Int, headDim: Int) throws {
        try Check.argument(start >= 0 && count >= 0, "rope", "start and count must be ≥ 0, got start \(start), count \(count)")
        _ = try rotaryWidth(rotary, headDim: headDim, "rope")
    }

    /// The arguments of `RotaryEmbedding.callAsFunction`: x `[B, T, H, D]` and valid tables.
    package static func rope(_ rotary: RotaryEmbedding, _ x: Tensor, start: Int) throws {
        try Check.rank(x, 4, "rope", "x [B, T, H, D]")
        try rotaryTables(rotary, start: start, count: x.shape[1], headDim: x.shape[3])
        try Check.float32(x, "rope", "x")
    }

    /// The arguments of `RotaryEmbedding.apply`: x `[B, T, H, D]` float32, cos and sin
    /// `[T, R/2]`; returns R.
    package static func rotaryApply(_ rotary: RotaryEmbedding, _ x: Tensor, cos cosT: Tensor, sin sinT: Tensor) throws -> Int {
        let op = "rope"
        try Check.float32(x, op, "x"); try Check.float32(cosT, op, "cos"); try Check.float32(sinT, op, "sin")
        try Check.rank(x, 4, op, "x [B, T, H, D]")
        let t = x.shape[1]
        let r = try rotaryWidth(rotary, headDim: x.shape[3], op)
        guard cosT.shape == [t, r / 2], sinT.shape == [t, r / 2] else {
            throw SparseMoEError.shapeMismatch(
                op: op, message: "cos \(cosT.shape) and sin \(sinT.shape) must be [T, R/2] = [\(t), \(r / 2)] for x \(x.shape), rotaryDim \(r)")
        }
        return r
    }
}
