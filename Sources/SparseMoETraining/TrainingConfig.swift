import SparseMoECore
import SparseMoEModels

/// The training objective.
public enum Objective: String, Codable, Sendable, CaseIterable {
    /// Next-token prediction with causal attention.
    case causal
    /// BERT-style masked LM with bidirectional attention; loss on masked positions only.
    case masked
}

/// Which parameters fine-tuning updates.
public enum FreezeMode: String, Codable, Sendable, CaseIterable {
    /// Train everything.
    case none
    /// Keep the routers fixed (their weights get no update).
    case routers
    /// Train only the experts (routed and shared); everything else fixed.
    case allButExperts = "all-but-experts"

    /// Whether the parameter with this name is frozen.
    public func freezes(_ name: String) -> Bool {
        switch self {
        case .none: return false
        case .routers: return name.contains(".mlp.gate.")
        case .allButExperts: return !(name.contains(".mlp.experts.") || name.contains(".mlp.shared_expert."))
        }
    }
}

/// Hyper-parameters of a training run. JSON keys are snake_case.
public struct TrainingConfig: Codable, Sendable, Equatable {
    public var steps = 300
    public var batchSize = 16
    public var sequenceLength = 128
    /// Peak learning rate; 2e-3 beat 1e-3 for tiny-moe and its dense twin (docs/scaling.md).
    public var learningRate = 2e-3
    public var warmupSteps = 30
    /// Cosine decay ends at learningRate × minLRFraction.
    public var minLRFraction = 0.1
    public var weightDecay = 0.1
    /// Global gradient-norm clip (0 = off).
    public var gradClip = 1.0
    /// Micro-batches per optimiser step.
    public var gradAccumulation = 1
    /// Evaluate on the validation split every n steps (0 = only at the end).
    public var evalEvery = 100
    public var evalBatches = 8
    public var seed: UInt64 = 0
    public var objective: Objective = .causal
    public var freeze: FreezeMode = .none
    /// Save a checkpoint every n steps (0 = only at the end).
    public var checkpointEvery = 0
    /// What the forward keeps for backward (`ActivationCheckpointing`); same gradients,
    /// less memory, more time. Absent in older configs: `none`.
    public var checkpointing: ActivationCheckpointing = .none
    /// The arithmetic of the matmuls in forward and backward (`MatmulPrecision`): `bf16`
    /// rounds their operands to bfloat16 and sums in float32 (mixed precision); weights,
    /// gradients, optimizer state, router logits, softmax, norms and losses stay float32.
    /// Absent in older configs: `fp32`.
    public var precision: MatmulPrecision = .float32

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        steps = try c.decode(Int.self, forKey: .steps)
        batchSize = try c.decode(Int.self, forKey: .batchSize)
        sequenceLength = try c.decode(Int.self, forKey: .sequenceLength)
        learningRate = try c.decode(Double.self, forKey: .learningRate)
        warmupSteps = try c.decode(Int.self, forKey: .warmupSteps)
        minLRFraction = try c.decode(Double.self, forKey: .minLRFraction)
        weightDecay = try c.decode(Double.self, forKey: .weightDecay)
        gradClip = try c.decode(Double.self, forKey: .gradClip)
        gradAccumulation = try c.decode(Int.self, forKey: .gradAccumulation)
        evalEvery = try c.decode(Int.self, forKey: .evalEvery)
        evalBatches = try c.decode(Int.self, forKey: .evalBatches)
        seed = try c.decode(UInt64.self, forKey: .seed)
        objective = try c.decode(Objective.self, forKey: .objective)
        freeze = try c.decode(FreezeMode.self, forKey: .freeze)
        checkpointEvery = try c.decode(Int.self, forKey: .checkpointEvery)
        checkpointing = try c.decodeIfPresent(ActivationCheckpointing.self, forKey: .checkpointing) ?? .none
        precision = try c.decodeIfPresent(MatmulPrecision.self, forKey: .precision) ?? .float32
    }

    /// Throws `invalidConfig` naming the first bad field.
    public func validate() throws {
        try requireConfig(steps >= 1, "steps", "must be ≥ 1, got \(steps)")
        try requireConfig(batchSize >= 1, "batch_size", "must be ≥ 1, got \(batchSize)")
        try requireConfig(sequenceLength >= 1, "sequence_length", "must be ≥ 1, got \(sequenceLength)")
        try requireConfig(learningRate > 0 && learningRate.isFinite, "learning_rate", "must be > 0, got \(learningRate)")
        try requireConfig(warmupSteps >= 0, "warmup_steps", "must be ≥ 0, got \(warmupSteps)")
        try requireConfig(minLRFraction >= 0 && minLRFraction <= 1, "min_lr_fraction", "must be in [0, 1], got \(minLRFraction)")
        try requireConfig(weightDecay >= 0, "weight_decay", "must be ≥ 0, got \(weightDecay)")
        try requireConfig(gradClip >= 0, "grad_clip", "must be ≥ 0, got \(gradClip)")
        try requireConfig(gradAccumulation >= 1, "grad_accumulation", "must be ≥ 1, got \(gradAccumulation)")
        try requireConfig(evalEvery >= 0, "eval_every", "must be ≥ 0, got \(evalEvery)")
        try requireConfig(evalBatches >= 1, "eval_batches", "must be ≥ 1, got \(evalBatches)")
        try requireConfig(checkpointEvery >= 0, "checkpoint_every", "must be ≥ 0, got \(checkpointEvery)")
    }

    enum CodingKeys: String, CodingKey {
        case steps, batchSize = "batch_size", sequenceLength = "sequence_length", learningRate = "learning_rate"
        case warmupSteps = "warmup_steps", minLRFraction = "min_lr_fraction", weightDecay = "weight_decay"
        case gradClip = "grad_clip", gradAccumulation = "grad_accumulation", evalEvery = "eval_every"
        case evalBatches = "eval_batches", seed, objective, freeze, checkpointEvery = "checkpoint_every", checkpointing
        case precision
    }
}
