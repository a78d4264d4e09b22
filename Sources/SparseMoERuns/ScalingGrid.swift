import Foundation
import SparseMoE

/// One model shape of a scaling grid: `layers` blocks of width `hidden` with `heads`
/// attention heads; `ffn` is the dense FFN width (dense shapes) or one expert's width
/// (MoE bases). SwiGLU everywhere, the presets' byte vocabulary.
public struct ScalingShape: Codable, Sendable, Equatable {
    public var layers: Int
    public var hidden: Int
    public var heads: Int
    public var ffn: Int

    public init(layers: Int, hidden: Int, heads: Int, ffn: Int) {
        self.layers = layers
        self.hidden = hidden
        self.heads = heads
        self.ffn = ffn
    }

    func validate(_ field: String) throws {
        try requireConfig(layers >= 1, "\(field).layers", "must be ≥ 1, got \(layers)")
        try requireConfig(hidden >= 1, "\(field).hidden", "must be ≥ 1, got \(hidden)")
        try requireConfig(heads >= 1 && hidden % heads == 0, "\(field).heads", "must be ≥ 1 and divide hidden (\(hidden)), got \(heads)")
        try requireConfig(ffn >= 1, "\(field).ffn", "must be ≥ 1, got \(ffn)")
    }
}

/// A larger configuration the sweep does not train: the fits predict its loss, then
/// `--predict` trains it and compares. `experts` nil = dense (predicted by L(N)), else an
/// MoE with that many experts of width `shape.ffn` (predicted by the routed law).
public struct ScalingTarget: Codable, Sendable, Equatable {
    public var shape: ScalingShape
    public var experts: Int?

    public init(shape: ScalingShape, experts: Int? = nil) {
        self.shape = shape
        self.experts = experts
    }
}

/// What `moe scaling` trains: dense shapes at fractions of the budget (for L(N), L(D) and
/// the compute frontier) and MoE bases with E experts each at a fixed active size (top-k
/// of experts of width `ffn`, for the routed law). JSON keys snake_case; every field is
/// required but `predict`.
public struct ScalingGrid: Codable, Sendable, Equatable {
    public var name: String
    public var sequenceLength: Int
    public var batchSize: Int
    public var learningRate: Double
    public var evalBatches: Int
    public var seed: UInt64
    /// Tokens each point trains on at fraction 1 (`--budget tokens`).
    public var tokens: Int
    /// Training FLOPs each point spends at fraction 1 (`--budget flops`).
    public var flops: Double
    /// Fractions of the budget each dense shape is trained for (1 must be among them:
    /// L(N) is fitted at 1; the largest shape's fractions give L(D)).
    public var budgetFractions: [Double]
    public var dense: [ScalingShape]
    public var moeBases: [ScalingShape]
    public var experts: [Int]
    public var topK: Int
    /// Bytes of the synthetic corpus (`--data synthetic`).
    public var syntheticBytes: Int
    public var predict: ScalingTarget?

    enum CodingKeys: String, CodingKey {
        case name, seed, tokens, flops, dense, experts, predict
        case sequenceLength = "sequence_length", batchSize = "batch_size", learningRate = "learning_rate"
        case evalBatches = "eval_batches", budgetFractions = "budget_fractions", moeBases = "moe_bases"
        case topK = "top_k", syntheticBytes = "synthetic_bytes"
    }

    /// Throws `invalidConfig` naming the first bad field (`dense[1].hidden`, `tokens`, …).
    public func validate() throws {
        try requireConfig(sequenceLength >= 2, "sequence_length", "must be ≥ 2, got \(sequenceLength)")
        try requireConfig(batchSize >= 1, "batch_size", "must be ≥ 1, got \(batchSize)")
        try requireConfig(learningRate > 0 && learningRate.isFinite, "learning_rate", "must be > 0, got \(learningRate)")
        try requireConfig(evalBatches >= 1, "eval_batches", "must be ≥ 1, got \(evalBatches)")
        try requireConfig(tokens >= 1, "tokens", "must be ≥ 1 (tokens per point at fraction 1), got \(tokens)")
        try requireConfig(flops > 0 && flops.isFinite, "flops", "must be > 0 (training FLOPs per point at fraction 1), got \(flops)")
        try requireConfig(!budgetFractions.isEmpty, "budget_fractions", "must list at least one fraction (1 among them)")
        for (i, f) in budgetFractions.enumerated() {
            try requireConfig(f > 0 && f <= 1, "budget_fractions[\(i)]", "must be in (0, 1], got \(f)")
        }
        try requireConfig(budgetFractions.contains(1), "budget_fractions", "must contain 1 (L(N) is fitted on the full budget), got \(budgetFractions)")
        try requireConfig(Set(budgetFractions).count == budgetFractions.count, "budget_fractions", "must not repeat a fraction, got \(budgetFractions)")
        try requireConfig(!dense.isEmpty || !moeBases.isEmpty, "dense", "the grid trains nothing: give dense shapes or moe_bases")
        for (i, s) in dense.enumerated() { try s.validate("dense[\(i)]") }
        for (i, s) in moeBases.enumerated() { try s.validate("moe_bases[\(i)]") }
        try requireConfig(topK >= 1, "top_k", "must be ≥ 1, got \(topK)")
        for (i, e) in experts.enumerated() {
            try requireConfig(e >= topK, "experts[\(i)]", "must be ≥ top_k (\(topK)), got \(e)")
        }
        try requireConfig(moeBases.isEmpty || !experts.isEmpty, "experts", "must list expert counts for the moe_bases")
        try requireConfig(syntheticBytes >= 1_000, "synthetic_bytes", "must be ≥ 1000, got \(syntheticBytes)")
        if let p = predict {
            try p.shape.validate("predict.shape")
            if let e = p.experts { try requireConfig(e >= topK, "predict.experts", "must be ≥ top_k (\(topK)), got \(e)") }
        }
    }

    /// The built-in grid names.
    public static let builtInNames = ["tiny", "small"]

    /// `tiny`: a smoke grid of a couple of minutes on 2 cores (too small for trustworthy
    /// exponents). `small`: the default, about 8 minutes on 2 idle cores (docs/scaling.md).
    public static func builtIn(_ name: String) throws -> ScalingGrid {
        switch name {
        case "tiny":
            return ScalingGrid(
                name: "tiny", sequenceLength: 32, batchSize: 8, learningRate: 3e-3, evalBatches: 4, seed: 0,
                tokens: 196_608, flops: 1.5e11, budgetFractions: [0.125, 0.25, 0.5, 1],
                dense: [ScalingShape(layers: 1, hidden: 16, heads: 2, ffn: 32), ScalingShape(layers: 1, hidden: 32, heads: 2, ffn: 64),
                        ScalingShape(layers: 2, hidden: 32, heads: 2, ffn: 64), ScalingShape(layers: 2, hidden: 48, heads: 4, ffn: 96)],
                moeBases: [ScalingShape(layers: 1, hidden: 16, heads: 2, ffn: 32), ScalingShape(layers: 1, hidden: 32, heads: 2, ffn: 64)],
                experts: [1, 2, 4, 8], topK: 1, syntheticBytes: 200_000,
                predict: ScalingTarget(shape: ScalingShape(layers: 2, hidden: 64, heads: 4, ffn: 128)))
        case "small":
            return ScalingGrid(
                name: "small", sequenceLength: 64, batchSize: 16, learningRate: 2e-3, evalBatches: 32, seed: 0,
                tokens: 614_400, flops: 5e12, budgetFractions: [0.125, 0.25, 0.5, 1],
                dense: [ScalingShape(layers: 1, hidden: 32, heads: 2, ffn: 64), ScalingShape(layers: 2, hidden: 48, heads: 4, ffn: 96),
                        ScalingShape(layers: 2, hidden: 64, heads: 4, ffn: 128), ScalingShape(layers: 3, hidden: 96, heads: 4, ffn: 192),
                        ScalingShape(layers: 4, hidden: 128, heads: 4, ffn: 256)],
                moeBases: [ScalingShape(layers: 2, hidden: 48, heads: 4, ffn: 96), ScalingShape(layers: 2, hidden: 64, heads: 4, ffn: 128)],
                experts: [1, 2, 4, 8, 16, 32], topK: 1, syntheticBytes: 1_500_000,
                predict: ScalingTarget(shape: ScalingShape(layers: 4, hidden: 192, heads: 6, ffn: 384)))
        default:
            throw SparseMoEError.invalidConfig(field: "grid", message: "unknown grid '\(name)'; built-in grids: \(builtInNames.joined(separator: ", ")), or a grid JSON file")
        }
    }

    /// A built-in name, or the JSON file at `spec` (validated). File errors name the file
    /// and the field (`dense[0].hidden`), as `SparseMoEError.file`.
    public static func load(_ spec: String) throws -> ScalingGrid {
        if builtInNames.contains(spec) { return try builtIn(spec) }
        guard spec.hasSuffix(".json") || FileManager.default.fileExists(atPath: spec) else { return try builtIn(spec) }
        guard let data = FileManager.default.contents(atPath: spec) else {
            throw SparseMoEError.file(path: spec, message: "cannot read the grid file (expected a grid JSON file or one of \(builtInNames.joined(separator: ", ")))")
        }
        return try decode(data, path: spec)
    }

    /// Decodes and validates a grid JSON document; errors name `path` and the field.
    public static func decode(_ data: Data, path: String) throws -> ScalingGrid {
        let grid: ScalingGrid
        do {
            grid = try JSONDecoder().decode(ScalingGrid.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw SparseMoEError.file(path: path, message: "missing field '\(fieldPath(context.codingPath + [key]))'")
        } catch let DecodingError.typeMismatch(type, context) {
            throw SparseMoEError.file(path: path, message: "field '\(fieldPath(context.codingPath))' must be \(type)")
        } catch let DecodingError.valueNotFound(type, context) {
            throw SparseMoEError.file(path: path, message: "field '\(fieldPath(context.codingPath))' must be \(type), got null")
        } catch {
            throw SparseMoEError.file(path: path, message: "not a scaling grid JSON document: \(error.localizedDescription)")
        }
        do { try grid.validate() } catch let e as SparseMoEError { throw SparseMoEError.file(path: path, message: e.description) }
        return grid
    }

    /// `dense[1].hidden` for a coding path.
    static func fieldPath(_ path: [CodingKey]) -> String {
        path.reduce("") { s, k in k.intValue.map { s + "[\($0)]" } ?? (s.isEmpty ? k.stringValue : s + "." + k.stringValue) }
    }

    /// Every point of the grid, dense shapes first (each at every fraction), then each
    /// MoE base at every expert count (fraction 1); the prediction target last when asked.
    public func points(includePrediction: Bool = false) -> [ScalingPoint] {
        var out: [ScalingPoint] = []
        for s in dense {
            for f in budgetFractions.sorted() { out.append(ScalingPoint(shape: s, experts: nil, topK: topK, fraction: f, role: .grid)) }
        }
        for s in moeBases {
            for e in experts { out.append(ScalingPoint(shape: s, experts: e, topK: topK, fraction: 1, role: .grid)) }
        }
        if includePrediction, let p = predict {
            out.append(ScalingPoint(shape: p.shape, experts: p.experts, topK: topK, fraction: 1, role: .prediction))
        }
        return out
    }
}

/// One training run of a sweep: a shape, dense (`experts` nil) or MoE, at a fraction of the budget.
public struct ScalingPoint: Codable, Sendable, Equatable {
    public enum Role: String, Codable, Sendable { case grid, prediction }
    public var shape: ScalingShape
    public var experts: Int?
    public var topK: Int
    public var fraction: Double
    public var role: Role

    public init(shape: ScalingShape, experts: Int?, topK: Int, fraction: Double, role: Role) {
        self.shape = shape
        self.experts = experts
        self.topK = topK
        self.fraction = fraction
        self.role = role
    }

    enum CodingKeys: String, CodingKey { case shape, experts, topK = "top_k", fraction, role }

    /// "dense-l2-c64-f128-x0.5", "moe-l1-c32-f64-e8-k1", "predict-dense-l2-c64-f128-x1": its folder's name.
    public var id: String {
        let s = "l\(shape.layers)-c\(shape.hidden)-f\(shape.ffn)"
        let base = experts.map { "moe-\(s)-e\($0)-k\(topK)" } ?? "dense-\(s)-x\(shortDecimal(fraction))"
        return role == .prediction ? "predict-" + base : base
    }

    /// The model: RoPE, RMSNorm, SwiGLU, the presets' vocabulary; MoE = softmax top-k routing
    /// over `experts` experts of width `ffn` in every layer (dropless, the default losses).
    /// Top-1 gates by the router probability itself (Switch Transformer): renormalised over
    /// one expert the gate would be exactly 1 and the router would learn from nothing but the
    /// balancing and z losses.
    public func transformerConfig(sequenceLength: Int) -> TransformerConfig {
        let moe = experts.map { e -> MoEConfig in
            var moe = MoEConfig(numExperts: e, topK: min(topK, e), expertIntermediateSize: shape.ffn)
            moe.normalizeTopK = moe.topK > 1
            return moe
        }
        return TransformerConfig(vocabSize: TransformerConfig.presetVocabSize, hiddenSize: shape.hidden, numLayers: shape.layers,
                                 numHeads: shape.heads, maxSequenceLength: sequenceLength,
                                 intermediateSize: moe.map { $0.topK * shape.ffn } ?? shape.ffn, moe: moe)
    }
}

/// Short decimal spelling for ids ("0.25", "1").
func shortDecimal(_ v: Double) -> String {
    v == v.rounded() ? String(Int(v)) : String(format: "%g", v)
}
