import SparseMoECore
import SparseMoENN
import SparseMoEModels
import SparseMoEDistributed

/// Predicted communication of one training step, per rank, by kind, and its time under the
/// alpha-beta model. Floats are 4 bytes.
///
/// Layout: N ranks in all; with expert parallelism the routed experts of every MoE layer are
/// split over groups of M ranks (E/M experts each, M divides N and E), so each expert has
/// R = N/M replicas (M = N for expert parallelism alone, M = 1 for data parallelism alone).
/// Every rank trains on T_local = B·T/N tokens of each micro-batch (`microBatches` per step).
///
/// - Gradients (ring all-reduce volume, sent = received per rank): the P − P_exp non-expert
///   parameters over all N ranks, 2·(N−1)/N · 4·(P − P_exp); the rank's P_exp/M expert
///   parameters over their R replicas, 2·(R−1)/R · 4·P_exp/M.
/// - Statistics, each an all-reduce of n floats over N ranks (2·(N−1)/N · 4·n): one flag per
///   trainable tensor and the step's 2 losses, once per step; the E expert counts of the
///   batch-level balance loss per MoE layer per micro-batch; the E pending loads of the
///   aux-loss-free bias update per MoE layer per step.
/// - Expert parallelism, per MoE layer per micro-batch, under uniform routing (a token's K
///   assignments land on each of the M ranks of its group alike, (M−1)/M of them elsewhere):
///   dispatch and combine forward each move T_local·K·(M−1)/M rows of C floats,
///   4·C·T_local·K·(M−1)/M bytes sent and the same received; backward the same again
///   (the gradients of the combined rows out, of the dispatched rows back).
///
/// Bytes are the payload the library hands to the collectives (as `CountingCommunicator`
/// counts it), not what Open MPI's internal algorithms forward between ranks. For
/// all-reduces the mean over the ranks is exact; a single rank's share of a small all-reduce
/// differs by the rounding of its chunk (`CommunicationTally.allReduceBytes`).
///
/// Time (alpha-beta: a message costs α + bytes/β): a ring all-reduce of S bytes over N ranks
/// takes 2(N−1)·α + 2(N−1)/N · S/β; an all-to-all sending S bytes per rank over M ranks
/// (M−1)·α + S/β. Collectives are not overlapped with compute here (the trainer does not yet).
public struct CommunicationModel: Sendable, Equatable {
    /// What a step of training moves, from the model and the batch.
    public struct Workload: Sendable, Equatable {
        /// P: trainable parameters (floats whose gradients are averaged).
        public var parameters: Int
        /// P_exp: the routed experts' parameters among them.
        public var expertParameters: Int
        /// Trainable parameter tensors (one flag each).
        public var parameterTensors: Int
        /// Per MoE layer: experts E and assignments per token K.
        public var moeLayers: [(experts: Int, topK: Int)]
        /// C: the width of the rows the experts take.
        public var hiddenSize: Int
        /// B·T: tokens of one global micro-batch.
        public var tokensPerMicroBatch: Int
        public var microBatches: Int
        /// The batch-level balance loss averages expert counts over the ranks.
        public var balanceCounts: Bool
        /// The aux-loss-free bias update sums the expert loads over the ranks.
        public var loadSums: Bool
        /// Gradient all-reduces per step (data parallel), when the tensors are known
        /// (`gradientBuckets(tensorSizes:)`); nil: ⌈P / 4 Mi⌉, which undercounts when tensors
        /// do not fill the buckets.
        public var gradientBuckets: Int? = nil

        public init(parameters: Int, expertParameters: Int, parameterTensors: Int, moeLayers: [(experts: Int, topK: Int)], hiddenSize: Int,
                    tokensPerMicroBatch: Int, microBatches: Int = 1, balanceCounts: Bool, loadSums: Bool) {
            self.parameters = parameters
            self.expertParameters = expertParameters
            self.parameterTensors = parameterTensors
            self.moeLayers = moeLayers
            self.hiddenSize = hiddenSize
            self.tokensPerMicroBatch = tokensPerMicroBatch
            self.microBatches = microBatches
            self.balanceCounts = balanceCounts
            self.loadSums = loadSums
        }

        /// The workload of training `config` on batches of `batchSize` × `sequenceLength`
        /// tokens: parameters from `ModelAccounting` (less the sigmoid-bias routers' selection
        /// biases, which are updated without gradients), the statistics from the MoE config.
        /// `parameterTensors`: the model's trainable tensors (`TransformerLM.namedParameters`).
        public init(transformer config: TransformerConfig, parameterTensors: Int, batchSize: Int, sequenceLength: Int,
                    microBatches: Int = 1) throws {
            let architecture = try ModelArchitecture(transformer: config)
            let a = try ModelAccounting(architecture, sequenceLength: sequenceLength)
            let moeLayers = architecture.layers.compactMap { l -> (experts: Int, topK: Int)? in
                guard case let .mixture(m) = l.feedForward else { return nil }
                return (m.numExperts, m.topK)
            }
            let biasFloats = config.moe?.router == .sigmoidBias ? moeLayers.reduce(0) { $0 + $1.experts } : 0
            let m = config.moe
            self.init(parameters: a.totalParams - biasFloats, expertParameters: a.params.routedExperts, parameterTensors: parameterTensors,
                      moeLayers: moeLayers, hiddenSize: config.hiddenSize, tokensPerMicroBatch: batchSize * sequenceLength,
                      microBatches: microBatches,
                      balanceCounts: m.map { $0.auxLossCoefficient > 0 && !$0.sequenceLevelAuxLoss && $0.router != .hash } ?? false,
                      loadSums: m?.router == .sigmoidBias)
        }

        public static func == (a: Self, b: Self) -> Bool {
            a.parameters == b.parameters && a.expertParameters == b.expertParameters && a.parameterTensors == b.parameterTensors
                && a.moeLayers.map(\.experts) == b.moeLayers.map(\.experts) && a.moeLayers.map(\.topK) == b.moeLayers.map(\.topK)
                && a.hiddenSize == b.hiddenSize && a.tokensPerMicroBatch == b.tokensPerMicroBatch && a.microBatches == b.microBatches
                && a.balanceCounts == b.balanceCounts && a.loadSums == b.loadSums
        }
    }

    /// One kind's traffic per step and rank.
    public struct Traffic: Sendable, Equatable {
        /// Collective calls.
        public var calls: Double
        /// Bytes sent (= received, for these symmetric collectives).
        public var bytes: Double
        /// Ranks taking part in each call (the most, when calls differ).
        public var ranks: Int
        /// Messages in sequence over all calls, each costing the latency α: 2(n−1) per
        /// all-reduce over n ranks, m−1 per all-to-all over m ranks.
        public var messages: Double
    }

    public var workload: Workload
    /// N
    public var ranks: Int
    /// M (1: no expert parallelism).
    public var expertRanks: Int

    /// Throws when M does not divide N or the experts of a MoE layer, or the batch does not
    /// split over the ranks.
    public init(_ workload: Workload, ranks: Int, expertRanks: Int = 1) throws {
        guard ranks >= 1 else { throw SparseMoEError.invalidConfig(field: "ranks", message: "must be ≥ 1, got \(ranks)") }
        guard expertRanks >= 1, ranks % expertRanks == 0 else {
            throw SparseMoEError.invalidConfig(field: "expert_ranks", message: "\(expertRanks) must be ≥ 1 and divide the \(ranks) ranks")
        }
        if expertRanks > 1, let bad = workload.moeLayers.first(where: { $0.experts % expertRanks != 0 }) {
            throw SparseMoEError.invalidConfig(field: "expert_ranks", message: "\(bad.experts) experts cannot be split evenly over \(expertRanks) expert ranks")
        }
        self.workload = workload
        self.ranks = ranks
        self.expertRanks = expertRanks
    }

    /// Bytes one rank sends (and receives) in an all-reduce of `floats` floats over `n` ranks:
    /// 2·(n−1)/n · 4·floats.
    public static func allReduceBytes(floats: Double, ranks n: Int) -> Double { n > 1 ? 2 * Double(n - 1) / Double(n) * 4 * floats : 0 }

    /// Rows one rank sends to other ranks in one all-to-all of a MoE layer: T_local·K·(M−1)/M.
    public func dispatchRows(topK: Int) -> Double {
        let m = Double(expertRanks)
        return Double(workload.tokensPerMicroBatch) / Double(ranks) * Double(topK) * (m - 1) / m
    }

    /// How many buckets the trainer packs gradients of tensors of these sizes (in order) into:
    /// a tensor joins the current bucket unless that would pass `bucketFloats`, then starts
    /// the next one (a tensor larger than a bucket gets one of its own).
    public static func gradientBuckets(tensorSizes: [Int], bucketFloats: Int = 1 << 22) -> Int {
        var buckets = 0, floats = 0, open = false
        for n in tensorSizes {
            if open && floats + n > bucketFloats { buckets += 1; floats = 0; open = false }
            floats += n; open = true
        }
        return buckets + (open ? 1 : 0)
    }

    /// Traffic per step and rank, by kind (`CommunicationKind`); kinds with no traffic left out.
    public var traffic: [CommunicationKind: Traffic] {
        let w = workload, n = ranks, m = expertRanks, replicas = ranks / expertRanks
        var out: [CommunicationKind: Traffic] = [:]
        guard n > 1 else { return out }
        let nonExpert = Double(m > 1 ? w.parameters - w.expertParameters : w.parameters)
        var gradientBytes = Self.allReduceBytes(floats: nonExpert, ranks: n)
        if m > 1 { gradientBytes += Self.allReduceBytes(floats: Double(w.expertParameters) / Double(m), ranks: replicas) }
        // One all-reduce per bucket of at most 4 Mi floats (exact for data parallelism with
        // `gradientBuckets`, else an estimate).
        let bucket = Double(1 << 22)
        let nonExpertCalls = m == 1 && w.gradientBuckets != nil ? Double(w.gradientBuckets!) : (nonExpert / bucket).rounded(.up)
        let expertCalls = m > 1 && replicas > 1 ? (Double(w.expertParameters) / Double(m) / bucket).rounded(.up) : 0
        out[.gradients] = Traffic(calls: nonExpertCalls + expertCalls, bytes: gradientBytes, ranks: n,
                                  messages: nonExpertCalls * 2 * Double(n - 1) + expertCalls * 2 * Double(replicas - 1))
        var statCalls = 2.0, statFloats = Double(w.parameterTensors + 2)
        if w.balanceCounts {
            statCalls += Double(w.moeLayers.count * w.microBatches)
            statFloats += Double(w.moeLayers.reduce(0) { $0 + $1.experts } * w.microBatches)
        }
        if w.loadSums {
            statCalls += Double(w.moeLayers.count)
            statFloats += Double(w.moeLayers.reduce(0) { $0 + $1.experts })
        }
        out[.statistics] = Traffic(calls: statCalls, bytes: Self.allReduceBytes(floats: statFloats, ranks: n), ranks: n,
                                   messages: statCalls * 2 * Double(n - 1))
        if m > 1 {
            let perCall = w.moeLayers.map { 4 * Double(w.hiddenSize) * dispatchRows(topK: $0.topK) }.reduce(0, +) * Double(w.microBatches)
            let calls = Double(w.moeLayers.count * w.microBatches)
            for kind in [CommunicationKind.dispatchForward, .combineForward, .dispatchBackward, .combineBackward] {
                out[kind] = Traffic(calls: calls, bytes: perCall, ranks: m, messages: calls * Double(m - 1))
            }
        }
        return out
    }

    /// Bytes sent per step and rank, all kinds.
    public var bytesPerStep: Double { traffic.values.reduce(0) { $0 + $1.bytes } }

    /// Seconds per step the collectives take under the alpha-beta model, with latency `alpha`
    /// seconds per message and bandwidth `beta` bytes per second: all-reduces
    /// 2(n−1)·α per call + bytes/β (the bytes already carry 2(n−1)/n), all-to-alls
    /// (m−1)·α per call + bytes/β.
    public func seconds(latency alpha: Double, bandwidth beta: Double) -> Double {
        traffic.values.reduce(0) { $0 + $1.messages * alpha + $1.bytes / beta }
    }
}
