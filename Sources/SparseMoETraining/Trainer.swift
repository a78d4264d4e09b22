import SparseMoECore
import SparseMoENN
import SparseMoEModels
import SparseMoEAnalysis
import SparseMoEDistributed

/// What one optimiser step did.
public struct StepReport: Sendable {
    /// 1-based index of the step just taken.
    public var step: Int
    /// Mean cross-entropy over the step's micro-batches.
    public var loss: Double
    /// Weighted auxiliary router losses (0 for dense models).
    public var auxLoss: Double
    public var learningRate: Double
    /// Gradient norm before clipping.
    public var gradNorm: Double
    /// True when the gradients held NaN/Inf and the update was skipped.
    public var skipped: Bool
    /// Tokens consumed (B·T·accumulation).
    public var tokens: Int
    /// Routing statistics of the last micro-batch, per layer (nil for dense layers).
    public var routing: [RoutingStatistics?]
    /// Matmul FLOPs the MoE layers executed in the forward passes of this step.
    public var moeExecutedFLOPs: Int
    /// This rank's collectives during the step, by kind (empty without a communicator).
    public var communication = CommunicationTally()
}

/// Mutable progress of a run, saved with checkpoints so a resumed run continues
/// exactly (same batches, same noise, same numbers for the same thread count).
public struct TrainerState: Codable, Sendable, Equatable {
    public var step: Int
    public var dataRNG: [UInt64]
    public var config: TrainingConfig
    /// FNV-1a 64 (16 hex digits) of every other file of the checkpoint folder, by file
    /// name, recorded when the checkpoint is written; nil in older checkpoints.
    public var checksums: [String: String]? = nil

    enum CodingKeys: String, CodingKey { case step, dataRNG = "data_rng", config, checksums }
}

/// Trains a `TransformerLM` on a `TextDataset` with AdamW, warmup + cosine decay,
/// clipping, gradient accumulation, a NaN/Inf guard and, for sigmoid-bias routers,
/// the aux-loss-free bias update once per optimiser step.
///
/// With a `Communicator` of N ranks it trains data-parallel (`DataParallel`): each rank
/// builds its own `Trainer` on its own replica of the model, all from the same config and
/// dataset; rank 0's initial parameters are copied to all; each step every rank trains on
/// B/N of the B sequences of the global batch and the gradients are averaged, so N ranks
/// train like one process on the global batch (to rounding) for dropless routers without
/// noise. Load-balancing statistics are global: the batch-level balance loss uses expert
/// counts averaged over the ranks, the aux-loss-free bias update sums the loads over the
/// ranks. What stays per rank: router noise and jitter (each rank draws its own for its
/// tokens), capacity limits and expert-choice routing (per rank's tokens), and the routing
/// statistics in the step report (rank's last micro-batch). Debug builds check after every
/// step that all replicas hold identical parameters.
///
/// With `parallel: .expert` or `.dataExpert(expertRanks: M)` the routed experts are also
/// partitioned (`ExpertParallel`): groups of M ranks, each rank computing and training E/M
/// experts for the tokens of its group (all-to-all dispatch inside the MoE layers), the rest
/// data parallel as above. Same step as one process on the global batch; capacity limits act
/// per rank's tokens (a single process matches with `CapacityLimit.groups` = N). Before a
/// checkpoint, every rank calls `gatherExperts()` so that rank 0 holds the full model.
public final class Trainer {
    public let model: TransformerLM
    public let dataset: TextDataset
    public let config: TrainingConfig
    public let optimizer: AdamW
    public let schedule: LRSchedule
    public private(set) var step = 0
    var dataRNG: RandomGenerator
    let masker: MaskedLM?
    /// Data parallelism over the communicator; nil for single-process training.
    let dataParallel: DataParallel?
    /// Expert parallelism (with `dataParallel` over the non-expert parameters); nil without.
    let expertParallel: ExpertParallel?

    /// Throws on an invalid config, a dataset of other windows, and when training would
    /// not fit in memory (`TrainingConfig.checkMemory`, before any optimiser state or batch).
    /// With `communicator`, every rank must call it (rank 0's parameters are broadcast), and
    /// `batch_size` must be a multiple of the number of ranks; with expert parallelism, the
    /// model must have MoE layers, the expert group size M must divide N and M must divide
    /// every layer's number of experts (errors name `moe`, `expert_ranks`, `num_experts`).
    public init(model: TransformerLM, dataset: TextDataset, config: TrainingConfig,
                communicator: (any Communicator)? = nil, parallel: ParallelLayout = .data) throws {
        try config.validate()
        if let c = communicator, config.batchSize % c.size != 0 {
            throw SparseMoEError.invalidConfig(field: "batch_size", message: "\(config.batchSize) sequences cannot be split evenly over \(c.size) data-parallel ranks: use a multiple of \(c.size)")
        }
        try config.checkMemory(model: model.config, allocatedCopies: 1)
        guard dataset.sequenceLength == config.sequenceLength else {
            throw SparseMoEError.invalidConfig(field: "sequence_length", message: "dataset windows are \(dataset.sequenceLength) tokens, config says \(config.sequenceLength)")
        }
        guard config.sequenceLength <= model.config.maxSequenceLength else {
            throw SparseMoEError.invalidConfig(field: "sequence_length", message: "\(config.sequenceLength) exceeds the model's max_position_embeddings \(model.config.maxSequenceLength)")
        }
        if config.objective == .masked {
            guard !model.config.causal else {
                throw SparseMoEError.invalidConfig(field: "causal", message: "masked-LM training needs a bidirectional model (causal: false)")
            }
            guard model.config.vocabSize > Int(ByteTokenizer.mask) else {
                throw SparseMoEError.invalidConfig(field: "vocab_size", message: "masked-LM needs the mask token \(ByteTokenizer.mask) in the vocabulary, vocab_size is \(model.config.vocabSize)")
            }
        }
        self.model = model
        self.dataset = dataset
        self.config = config
        let named = model.namedParameters()
        for (name, t) in named where config.freeze.freezes(name) { t.requiresGrad = false }
        let trainable = named.filter { !config.freeze.freezes($0.name) && $0.tensor.requiresGrad }
        optimizer = try AdamW(groups: AdamW.defaultGroups(trainable, weightDecay: config.weightDecay))
        // Every step allocates the same activations and gradients: the pool keeps them all idle
        // between steps rather than freeing what passes its default limit and faulting it in again.
        // The analytic estimate is a first floor; each step raises it to what it measured.
        if let memory = try? TrainingMemoryEstimate(model: model.config, batchSize: config.batchSize,
                                                    sequenceLength: config.sequenceLength, checkpointing: config.checkpointing) {
            let gradientBytes = 4 * trainable.reduce(0) { $0 + $1.tensor.count }
            StoragePool.shared.keepIdle(atLeast: memory.activationBytes + memory.backwardBytes + gradientBytes)
        }
        schedule = LRSchedule(peak: config.learningRate, warmupSteps: config.warmupSteps, totalSteps: config.steps,
                              minFraction: config.minLRFraction)
        try schedule.validate()
        dataRNG = RandomGenerator(seed: config.seed)
        masker = config.objective == .masked ? try MaskedLM() : nil
        if let c = communicator {
            let m = parallel.expertRanks(worldSize: c.size)
            var ep: ExpertParallel?
            if m > 1 || parallel != .data { ep = try ExpertParallel(world: c, expertRanks: m, model: model) }
            let replicated = optimizer.trainableParameters.map(\.tensor).filter { ep?.isExpert($0) != true }
            let dp = DataParallel(communicator: c, parameters: replicated)
            try dp.broadcast(named.map(\.tensor).filter { $0.dtype == .float32 })
            dataParallel = dp
            expertParallel = ep
        } else {
            guard parallel == .data else {
                throw SparseMoEError.invalidConfig(field: "parallel", message: "expert parallelism needs a communicator of the ranks (run under mpirun, or with LocalCommunicatorGroup)")
            }
            dataParallel = nil
            expertParallel = nil
        }
    }

    /// This rank's collectives since the trainer was made (the initial broadcast included), by
    /// kind; nil without a communicator.
    public var communicationTally: CommunicationTally? { dataParallel?.communicator.tally }

    /// Parameters the optimiser updates.
    public var trainableParameterCount: Int { optimizer.trainableParameters.reduce(0) { $0 + $1.tensor.count } }

    /// Inputs and targets of one micro-batch for the objective.
    func microBatch(_ split: DatasetSplit, rng: inout RandomGenerator) throws -> (Tensor, Tensor) {
        let batch = try dataset.randomBatch(split, batchSize: config.batchSize, using: &rng)
        let (inputs, targets) = try masker.map { try $0.apply(to: batch.inputs, using: &rng) } ?? (batch.inputs, batch.targets)
        guard let dp = dataParallel else { return (inputs, targets) }
        // This rank's rows of the global batch (every rank drew the same batch and masking).
        let rows = dp.rows(of: config.batchSize)
        return (Self.copyRows(inputs, rows), Self.copyRows(targets, rows))
    }

    /// Rows of an int32 `[B, T]` tensor, copied.
    static func copyRows(_ t: Tensor, _ rows: Range<Int>) -> Tensor {
        let width = t.shape[1]
        let values = Array(UnsafeBufferPointer(start: t.int32s + rows.lowerBound * width, count: rows.count * width))
        return Tensor(indices: values, shape: [rows.count, width])
    }

    /// One optimiser step over `gradAccumulation` micro-batches, its matmuls in `precision`
    /// (default `config.precision`; another one is for measurements comparing precisions on the
    /// same weights).
    public func trainStep(precision: MatmulPrecision? = nil) throws -> StepReport {
        try MatmulPrecision.with(precision ?? config.precision) { try trainStepInPrecision() }
    }

    private func trainStepInPrecision() throws -> StepReport {
        let talliedBefore = dataParallel?.communicator.tally
        model.zeroGrad()
        var ceSum = 0.0, auxSum = 0.0, moeFLOPs = 0
        var routing: [RoutingStatistics?] = []
        let accum = config.gradAccumulation
        // The pool keeps the memory the forward and backward passes used (measured) idle
        // between steps, so that the next step faults none in.
        try StoragePool.shared.keepIdle(forRepeated: {
            for micro in 0..<accum {
                let (inputs, targets) = try microBatch(.train, rng: &dataRNG)
                let noise = RandomGenerator(seed: config.seed &+ 0x9E37_79B9 &* UInt64(step * accum + micro + 1))
                var options = ForwardOptions(training: true, rng: noise, checkpointing: config.checkpointing)
                options.replicaMean = dataParallel?.replicaMean
                let out = try model.forward(inputs, options: options)
                let ce = crossEntropy(out.logits, targets: targets, ignoreIndex: MaskedLM.ignoreIndex)
                var total = ce
                if let aux = out.auxLoss { total = add(ce, aux); auxSum += Double(aux.item) }
                (accum == 1 ? total : scale(total, by: 1 / Float(accum))).backward()
                ceSum += Double(ce.item)
                moeFLOPs += ExecutedFLOPs.moeLayers(model, out)
                routing = model.routingStatistics(out)
            }
            if let dp = dataParallel {
                try expertParallel?.reduceExpertGradients()
                try dp.averageGradients()
                let means = try dp.mean([ceSum, auxSum])
                (ceSum, auxSum) = (means[0], means[1])
            }
        })
        // The clipping factor goes into the optimizer step (one pass over the gradients fewer).
        let norm = if let ep = expertParallel {
            try ep.gradientNorm(optimizer.trainableParameters.map(\.tensor))
        } else {
            optimizer.gradientNorm()
        }
        let clip = AdamW.clipScale(norm: norm, maxNorm: config.gradClip)
        let lr = schedule.lr(step: step)
        step += 1
        let skipped = !clip.isFinite
        if skipped {
            model.zeroGrad()
            for m in model.moeLayers { m.router.discardPendingLoad() }
        } else {
            optimizer.step(lr: lr, gradientScale: clip.scale)
            if let rate = model.config.moe?.biasUpdateRate {
                for m in model.moeLayers {
                    if let dp = dataParallel { try m.router.sumPendingLoad(dp.replicaSum) }
                    m.router.updateBias(rate: rate)
                }
            }
        }
        if _isDebugAssertConfiguration(), let dp = dataParallel {
            let replicated = model.namedParameters().map(\.tensor).filter { $0.dtype == .float32 && expertParallel?.isExpert($0) != true }
            let same = try dp.replicasIdentical(replicated)
            precondition(same, "data parallel: rank \(dp.rank)'s parameters differ from rank 0's after step \(step)")
            if let ep = expertParallel {
                let sameExperts = try DataParallel(communicator: ep.expertReplicas, parameters: []).replicasIdentical(ep.ownedSlices())
                precondition(sameExperts, "expert parallel: rank \(dp.rank)'s experts differ from those of the first rank holding the same experts after step \(step)")
            }
        }
        var report = StepReport(step: step, loss: ceSum / Double(accum), auxLoss: auxSum / Double(accum), learningRate: lr,
                                gradNorm: clip.norm, skipped: skipped, tokens: accum * config.batchSize * config.sequenceLength,
                                routing: routing, moeExecutedFLOPs: moeFLOPs)
        if let dp = dataParallel, let before = talliedBefore { report.communication = dp.communicator.tally - before }
        return report
    }

    /// Mean cross-entropy per target token on up to `evalBatches` sequential batches of
    /// `split` (masked LM: a fixed masking, the same at every evaluation), matmuls in
    /// `config.precision`.
    public func evaluate(_ split: DatasetSplit = .validation) throws -> Double {
        try MatmulPrecision.with(config.precision) { try evaluateInPrecision(split) }
    }

    private func evaluateInPrecision(_ split: DatasetSplit) throws -> Double {
        var rng = RandomGenerator(seed: config.seed ^ 0x5EED_0F_E7A1)
        let batches = try dataset.evaluationBatches(split, batchSize: config.batchSize, maxBatches: config.evalBatches)
        return try LanguageModelEvaluation.loss(model, batches: batches) { batch in
            try masker.map { try $0.apply(to: batch.inputs, using: &rng) } ?? (batch.inputs, batch.targets)
        }
    }

    /// Expert parallelism: copies every rank's experts (and their optimiser moments) to rank 0,
    /// so that rank 0 holds the full model and can write a checkpoint or model folder. Every rank
    /// must call it before rank 0 saves; nothing to do otherwise.
    public func gatherExperts() throws {
        try expertParallel?.gatherToRankZero(optimizer: optimizer)
    }

    /// The state to save with a checkpoint.
    public var state: TrainerState { TrainerState(step: step, dataRNG: dataRNG.state, config: config) }

    /// Continues from a saved state (after loading the model weights and optimiser state).
    public func restore(_ s: TrainerState) throws {
        guard s.step >= 0 && s.step <= config.steps else {
            throw SparseMoEError.invalidConfig(field: "step", message: "checkpoint step \(s.step) is outside 0...\(config.steps)")
        }
        step = s.step
        dataRNG = try RandomGenerator(state: s.dataRNG)
    }
}
