import Foundation
import SparseMoE
import SparseMoEBench

/// How a sweep sizes each point: the same tokens, or the same training FLOPs (then bigger
/// models train for fewer steps), times the point's budget fraction.
public enum ScalingBudget: String, Codable, Sendable, CaseIterable {
    case tokens, flops
}

/// A point ready to train: its model, step count and what it will cost.
public struct ScalingPlan: Sendable {
    public var point: ScalingPoint
    public var config: TransformerConfig
    public var steps: Int
    /// steps × batch × sequence.
    public var tokens: Int
    /// N: active parameters without the embedding and the output head (Kaplan et al.'s
    /// count); for an MoE point, those of its dense base (the same shape with E = 1).
    public var parameters: Int
    /// All parameters without the embedding and the output head (every expert counted).
    public var totalParameters: Int
    /// C = training FLOPs per token (analytic, `ModelAccounting`) × tokens.
    public var trainingFlops: Double
}

/// What a trainer measured on one point.
public struct ScalingMeasurement: Sendable {
    public var validationLoss: Double
    public var trainLoss: Double
    public var seconds: Double
    public init(validationLoss: Double, trainLoss: Double, seconds: Double) {
        self.validationLoss = validationLoss
        self.trainLoss = trainLoss
        self.seconds = seconds
    }
}

/// Trains one point into its folder; `progress` gets the share of the point done (0…1).
public protocol ScalingPointTrainer {
    func train(_ plan: ScalingPlan, in folder: URL, progress: (Double) -> Void) throws -> ScalingMeasurement
}

/// One line of `points.jsonl`: a point and how its training ended.
public struct ScalingPointResult: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable { case ok, failed }
    public var id: String
    public var point: ScalingPoint
    public var status: Status
    /// Why a failed point failed.
    public var error: String?
    public var steps: Int
    public var tokens: Int
    public var parameters: Int
    public var totalParameters: Int
    public var trainingFlops: Double
    public var validationLoss: Double?
    public var trainLoss: Double?
    public var seconds: Double

    enum CodingKeys: String, CodingKey {
        case id, point, status, error, steps, tokens, parameters, seconds
        case totalParameters = "total_parameters", trainingFlops = "training_flops"
        case validationLoss = "val_loss", trainLoss = "train_loss"
    }
}

/// Where a sweep stands, for a progress line.
public struct ScalingProgress: Sendable {
    /// 1-based position of the current point, and the count of points.
    public var index: Int
    public var total: Int
    public var pointID: String
    /// Share of the current point done.
    public var pointFraction: Double
    public var finished: Int
    public var failed: Int
    /// Points skipped because an earlier sweep finished them.
    public var skipped: Int
    public var elapsed: Double
    /// Seconds left over the whole sweep: elapsed / FLOPs trained so far × FLOPs left
    /// (nil before the first step).
    public var eta: Double?
}

/// A sweep of training runs into `output`: `points/<id>/` per point (the report folder
/// `moe train` writes) and `points.jsonl` (one `ScalingPointResult` per point, rewritten
/// atomically after each). Resumable: a point recorded `ok` with the planned step count is
/// skipped; a failed or missing one is (re)trained. A point that throws is recorded
/// `failed` with its error and the sweep goes on.
public final class ScalingSweep {
    public let grid: ScalingGrid
    public let budget: ScalingBudget
    public let output: URL
    public let plans: [ScalingPlan]
    public static let resultsFileName = "points.jsonl"

    public init(grid: ScalingGrid, budget: ScalingBudget, output: URL, includePrediction: Bool = false) throws {
        try grid.validate()
        self.grid = grid
        self.budget = budget
        self.output = output
        plans = try grid.points(includePrediction: includePrediction).map { try Self.plan($0, grid: grid, budget: budget) }
    }

    /// Steps, tokens, parameters and FLOPs of `point`.
    public static func plan(_ point: ScalingPoint, grid: ScalingGrid, budget: ScalingBudget) throws -> ScalingPlan {
        let config = point.transformerConfig(sequenceLength: grid.sequenceLength)
        try config.validate()
        let a = try ModelAccounting(ModelArchitecture(transformer: config), sequenceLength: grid.sequenceLength)
        let perStep = grid.batchSize * grid.sequenceLength
        let steps: Int
        switch budget {
        case .tokens: steps = max(1, Int((Double(grid.tokens) * point.fraction / Double(perStep)).rounded()))
        case .flops: steps = max(1, Int((grid.flops * point.fraction / (a.trainingFlopsPerToken * Double(perStep))).rounded()))
        }
        let embedTotal = a.params.embedding + a.params.head
        // N of an MoE point is its dense base's (the E = 1 model's), as in Clark et al.:
        // the router's E·C weights per layer would otherwise split one base into several N.
        var base = point
        if base.experts != nil { base.experts = 1 }
        let b = base == point ? a : try ModelAccounting(ModelArchitecture(transformer: base.transformerConfig(sequenceLength: grid.sequenceLength)),
                                                         sequenceLength: grid.sequenceLength)
        let n = b.activeParams - b.activeParamsBreakdown.embedding - b.activeParamsBreakdown.head
        return ScalingPlan(point: point, config: config, steps: steps, tokens: steps * perStep, parameters: n,
                           totalParameters: a.totalParams - embedTotal, trainingFlops: a.trainingFlopsPerToken * Double(steps * perStep))
    }

    public var resultsURL: URL { output.appendingPathComponent(Self.resultsFileName) }

    /// The folder of a point's run.
    public func folder(of point: ScalingPoint) -> URL { output.appendingPathComponent("points").appendingPathComponent(point.id) }

    /// The results recorded in `points.jsonl` (the last line per id wins); none when absent.
    public func recordedResults() throws -> [String: ScalingPointResult] {
        guard let data = FileManager.default.contents(atPath: resultsURL.path) else { return [:] }
        var out: [String: ScalingPointResult] = [:]
        for (i, line) in String(decoding: data, as: UTF8.self).split(separator: "\n").enumerated() where !line.allSatisfy(\.isWhitespace) {
            do {
                let r = try JSONDecoder().decode(ScalingPointResult.self, from: Data(line.utf8))
                out[r.id] = r
            } catch {
                throw SparseMoEError.file(path: resultsURL.path, message: "line \(i + 1) is not a point result (\(error.localizedDescription)); remove the line to retrain that point")
            }
        }
        return out
    }

    /// Whether `result` finished `plan` (same point, ok, same step count and tokens).
    static func finishes(_ result: ScalingPointResult?, _ plan: ScalingPlan) -> Bool {
        guard let r = result else { return false }
        return r.status == .ok && r.point == plan.point && r.steps == plan.steps && r.tokens == plan.tokens && r.validationLoss != nil
    }

    /// Trains every point not finished yet, in plan order; returns one result per plan.
    public func run(trainer: ScalingPointTrainer, onProgress: (ScalingProgress) -> Void = { _ in }) throws -> [ScalingPointResult] {
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        var recorded = try recordedResults()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let gridEncoder = JSONEncoder()
        gridEncoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(gridEncoder.encode(grid), to: output.appendingPathComponent("grid.json"))
        func save() throws {
            let ids = plans.map(\.point.id)
            let extra = recorded.keys.filter { !ids.contains($0) }.sorted()  // points of an earlier grid: kept
            var text = ""
            for id in extra + ids { if let r = recorded[id] { text += String(decoding: try encoder.encode(r), as: UTF8.self) + "\n" } }
            try AtomicFile.write(Data(text.utf8), to: resultsURL)
        }
        let clock = ContinuousClock(), start = clock.now
        func elapsed() -> Double { MachinePeak.seconds(clock.now - start) }
        let todo = plans.filter { !Self.finishes(recorded[$0.point.id], $0) }
        let flopsLeftTotal = todo.reduce(0) { $0 + $1.trainingFlops }
        var flopsDone = 0.0
        var status = ScalingProgress(index: 0, total: plans.count, pointID: "", pointFraction: 0, finished: plans.count - todo.count,
                                     failed: 0, skipped: plans.count - todo.count, elapsed: 0, eta: nil)
        for (i, plan) in plans.enumerated() where !Self.finishes(recorded[plan.point.id], plan) {
            status.index = i + 1
            status.pointID = plan.point.id
            func report(_ f: Double) {
                status.pointFraction = f
                status.elapsed = elapsed()
                let done = flopsDone + f * plan.trainingFlops
                status.eta = done > 0 ? max(0, status.elapsed / done * (flopsLeftTotal - done)) : nil
                onProgress(status)
            }
            report(0)
            var result = ScalingPointResult(id: plan.point.id, point: plan.point, status: .failed, error: nil, steps: plan.steps, tokens: plan.tokens,
                                            parameters: plan.parameters, totalParameters: plan.totalParameters, trainingFlops: plan.trainingFlops,
                                            validationLoss: nil, trainLoss: nil, seconds: 0)
            let pointStart = clock.now
            do {
                let m = try trainer.train(plan, in: folder(of: plan.point), progress: report)
                result.seconds = m.seconds
                if m.validationLoss.isFinite {
                    result.status = .ok
                    result.validationLoss = m.validationLoss
                    result.trainLoss = m.trainLoss.isFinite ? m.trainLoss : nil
                } else {
                    result.error = "the validation loss is not finite (\(m.validationLoss)): training diverged"
                }
            } catch {
                result.error = "\(error)"
                result.seconds = MachinePeak.seconds(clock.now - pointStart)
            }
            if result.status == .ok { status.finished += 1 } else { status.failed += 1 }
            recorded[plan.point.id] = result
            try save()
            flopsDone += plan.trainingFlops
            report(1)
        }
        try save()
        return plans.map { recorded[$0.point.id]! }
    }
}

/// Trains a point the way `moe train` does (`TrainingRun`): the model's config.json and the
/// run's report folder (summary.json, loss.svg, model/, checkpoints/) in the point folder;
/// evaluation on `evalBatches` validation batches at the end. A half-written run left by
/// an interrupted sweep is replaced.
public struct TrainingRunPointTrainer: ScalingPointTrainer {
    /// A UTF-8 text file, or nil for the synthetic corpus.
    public var dataPath: String?
    public var grid: ScalingGrid

    public init(dataPath: String?, grid: ScalingGrid) {
        self.dataPath = dataPath
        self.grid = grid
    }

    public func train(_ plan: ScalingPlan, in folder: URL, progress: (Double) -> Void) throws -> ScalingMeasurement {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let configURL = folder.appendingPathComponent("config.json")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(encoder.encode(plan.config), to: configURL)
        var o = TrainingRunOptions()
        o.model = .config(configURL.path)
        o.dataPath = dataPath
        o.syntheticCorpusBytes = grid.syntheticBytes
        o.outputDirectory = folder.path
        var t = TrainingConfig()
        t.steps = plan.steps
        t.batchSize = grid.batchSize
        t.sequenceLength = grid.sequenceLength
        t.learningRate = grid.learningRate
        t.warmupSteps = max(1, min(30, plan.steps / 10))
        t.evalEvery = 0
        t.evalBatches = grid.evalBatches
        t.seed = grid.seed
        o.training = t
        let run = try TrainingRun(options: o, force: true)
        let summary = try run.run(onStep: { r, _ in progress(Double(r.step) / Double(plan.steps)) })
        return ScalingMeasurement(validationLoss: summary.valLoss, trainLoss: summary.trainLoss, seconds: summary.seconds)
    }
}
