import SparseMoECore

/// Settings of BERT-style masking for masked-LM training.
public struct MaskingConfig: Codable, Sendable, Equatable {
    /// Probability that a position is chosen for prediction (BERT: 0.15).
    public var maskProbability: Double = 0.15
    /// Of the chosen positions: fraction replaced by the mask token (BERT: 0.8) …
    public var maskTokenFraction: Double = 0.8
    /// … fraction replaced by a random token (BERT: 0.1); the rest stay unchanged.
    public var randomTokenFraction: Double = 0.1

    public init(maskProbability: Double = 0.15, maskTokenFraction: Double = 0.8, randomTokenFraction: Double = 0.1) {
        self.maskProbability = maskProbability
        self.maskTokenFraction = maskTokenFraction
        self.randomTokenFraction = randomTokenFraction
    }

    /// Throws `invalidConfig` naming the first bad field.
    public func validate() throws {
        guard maskProbability > 0 && maskProbability <= 1 else {
            throw SparseMoEError.invalidConfig(field: "maskProbability", message: "must be in (0, 1], got \(maskProbability)")
        }
        guard maskTokenFraction >= 0, randomTokenFraction >= 0, maskTokenFraction + randomTokenFraction <= 1 else {
            throw SparseMoEError.invalidConfig(
                field: "maskTokenFraction", message: "maskTokenFraction (\(maskTokenFraction)) and randomTokenFraction (\(randomTokenFraction)) must be ≥ 0 with a sum ≤ 1")
        }
    }
}

/// BERT-style masking of token sequences for the masked-LM objective.
///
/// Per sequence (row of `[B, T]`): every maskable position is chosen independently
/// with probability p (`maskProbability`); if none was chosen, one maskable position
/// is chosen uniformly, so every sequence with a maskable position predicts at least
/// one token. Each chosen position draws u ~ U[0,1): u < 0.8 → the mask token,
/// u < 0.9 → a token uniform in `randomTokens` (it may equal the original, as in
/// BERT), otherwise unchanged. Targets hold the original token at chosen positions
/// and `ignoreIndex` (-100) elsewhere. Positions holding a token in `neverMask`
/// (pad, bos, eos by default) are never chosen.
public struct MaskedLM: Sendable {
    /// Target value of positions without a loss (PyTorch's cross-entropy default).
    public static let ignoreIndex: Int32 = -100

    public let config: MaskingConfig
    public let maskToken: Int32
    public let randomTokens: Range<Int32>
    public let neverMask: Set<Int32>

    public init(config: MaskingConfig = MaskingConfig(), maskToken: Int32 = ByteTokenizer.mask,
                randomTokens: Range<Int32> = 0..<256,
                neverMask: Set<Int32> = [ByteTokenizer.pad, ByteTokenizer.bos, ByteTokenizer.eos]) throws {
        try config.validate()
        guard !randomTokens.isEmpty else {
            throw SparseMoEError.invalidConfig(field: "randomTokens", message: "the random-token range must not be empty")
        }
        self.config = config
        self.maskToken = maskToken
        self.randomTokens = randomTokens
        self.neverMask = neverMask
    }

    /// Masks `tokens` (int32 `[B, T]` or `[T]`): returns the corrupted inputs and the
    /// targets, both int32 of the same shape. Draws from `rng` in row-major order.
    public func apply(to tokens: Tensor, using rng: inout RandomGenerator) throws -> (inputs: Tensor, targets: Tensor) {
        guard tokens.dtype == .int32 else {
            throw SparseMoEError.invalidArgument(op: "MaskedLM.apply", message: "tokens must be int32, got \(tokens.dtype)")
        }
        guard tokens.rank == 1 || tokens.rank == 2 else {
            throw SparseMoEError.shapeMismatch(op: "MaskedLM.apply", message: "tokens must be [B, T] or [T], got \(tokens.shape)")
        }
        let t = tokens.shape.last!
        let rows = tokens.rank == 2 ? tokens.shape[0] : 1
        let inputs = tokens.copy()
        let targets = Tensor(zeros: tokens.shape, dtype: .int32)
        let src = tokens.int32s, ip = inputs.int32s, tp = targets.int32s
        let p = Float(config.maskProbability)
        let maskCut = Float(config.maskTokenFraction)
        let randomCut = Float(config.maskTokenFraction + config.randomTokenFraction)
        let randomCount = Int(randomTokens.upperBound) - Int(randomTokens.lowerBound)
        var chosen = [Bool](repeating: false, count: t)
        for r in 0..<rows {
            let base = r * t
            var any = false
            var maskable = 0
            for j in 0..<t {
                let ok = !neverMask.contains(src[base + j])
                let c = ok && rng.uniform() < p
                chosen[j] = c
                any = any || c
                if ok { maskable += 1 }
            }
            if !any && maskable > 0 {
                var k = rng.int(below: maskable)
                for j in 0..<t where !neverMask.contains(src[base + j]) {
                    if k == 0 { chosen[j] = true; break }
                    k -= 1
                }
            }
            for j in 0..<t {
                guard chosen[j] else { tp[base + j] = Self.ignoreIndex; continue }
                tp[base + j] = src[base + j]
                let u = rng.uniform()
                if u < maskCut {
                    ip[base + j] = maskToken
                } else if u < randomCut {
                    ip[base + j] = randomTokens.lowerBound + Int32(rng.int(below: randomCount))
                }
            }
        }
        return (inputs, targets)
    }
}
