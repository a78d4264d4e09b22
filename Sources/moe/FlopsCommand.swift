import ArgumentParser
import Foundation
import SparseMoE

/// `moe flops`: parameters and FLOPs per token of an architecture, with dense comparisons.
struct Flops: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Count parameters (total and active) and FLOPs per token, against dense equivalents.",
        discussion: """
        FLOPs are per token, forward: every matrix product counts 2·m·n·k; attention
        score/value products are evaluated at --seq and shown causal (headline) and full.
        Training = 3 × forward matrix-product FLOPs. Element-wise work (norms,
        activations, softmax, RoPE) is counted separately as "non-matmul".
        Dense equivalents replace every MoE block by one dense MLP sized to match the
        sparse model's active (or total) parameters.

        Examples:
          moe flops --config tiny-moe
          moe flops --config my-config.json --seq 512 --json
          moe flops --hf-config Mixtral-8x7B/config.json
          moe flops --config medium-moe --memory --batch-size 8 --seq 512 --checkpointing block

        --memory prints training memory per layer instead (analytic, float32, AdamW):
        weights + gradients + two AdamW moments (16 bytes per parameter) and the
        activations one micro-batch keeps for backward in the --checkpointing mode,
        beside those without checkpointing (TrainingMemoryEstimate).
        """)

    @Option(name: .customLong("hf-config"), help: "A Hugging Face config.json (or the model folder holding it).")
    var hfConfig: String?

    @Option(help: ArgumentHelp("The library's own model: a preset name or a TransformerConfig JSON file.",
                               discussion: "Presets: \(TransformerConfig.presetNames.joined(separator: ", ")).",
                               valueName: "file|preset"))
    var config: String?

    @Option(name: [.customLong("seq"), .customLong("sequence-length")],
            help: "Sequence length for the attention terms (default: 2048 for --hf-config, max_position_embeddings for --config).")
    var seq: Int?

    @Flag(help: "Training memory per layer (parameters, gradients, AdamW state, activations) instead of FLOPs; needs --config.")
    var memory = false

    @Option(name: .customLong("batch-size"), help: "With --memory: sequences per micro-batch; with --parallel: of the global micro-batch.")
    var batchSize: Int = 16

    @Option(help: "With --memory: activation checkpointing none, attention or block.")
    var checkpointing: String = "none"

    @Flag(help: "Print one JSON object instead of the table.")
    var json = false

    @Option(help: "Communication per training step and rank instead of FLOPs (needs --config): data, expert or data,expert.")
    var parallel: String?

    @Option(help: "With --parallel: ranks N.")
    var ranks: Int = 2

    @Option(name: .customLong("expert-ranks"), help: "With --parallel data,expert: ranks M per expert group (with expert alone the experts split over all N ranks).")
    var expertRanks: Int?

    @Option(help: "With --parallel: micro-batches per step (gradient accumulation).")
    var accumulate: Int = 1

    @Option(help: "With --parallel: link bandwidth in Gb/s for the predicted step time (alpha-beta model; see docs/scale-out.md).")
    var bandwidth: Double?

    @Option(help: "With --parallel: latency per message in microseconds for the predicted step time.")
    var latency: Double = 5

    @Option(name: .customLong("node-tokens-per-second"), help: "With --bandwidth: training tokens/s of one node (as `moe train` reports it) for the compute term.")
    var nodeTokensPerSecond: Double?

    func validate() throws {
        guard (hfConfig == nil) != (config == nil) else { throw ValidationError("give exactly one of --hf-config PATH and --config FILE|PRESET") }
        if let seq { guard seq >= 1 else { throw ValidationError("--seq must be at least 1") } }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1, got \(batchSize)") }
        guard ActivationCheckpointing(rawValue: checkpointing) != nil else {
            throw ValidationError("--checkpointing must be one of \(ActivationCheckpointing.allCases.map(\.rawValue).joined(separator: ", ")), got '\(checkpointing)'")
        }
        if memory && config == nil { throw ValidationError("--memory needs --config FILE|PRESET (the library's own model)") }
        if let parallel {
            _ = try parallelLayout(parallel, expertRanks: expertRanks)
            guard config != nil else { throw ValidationError("--parallel needs --config FILE|PRESET (the library's own model)") }
            guard ranks >= 1 else { throw ValidationError("--ranks must be at least 1, got \(ranks)") }
            guard accumulate >= 1 else { throw ValidationError("--accumulate must be at least 1, got \(accumulate)") }
            if let b = bandwidth { guard b > 0 && b.isFinite else { throw ValidationError("--bandwidth must be > 0 Gb/s, got \(b)") } }
            guard latency >= 0 && latency.isFinite else { throw ValidationError("--latency must be ≥ 0 µs, got \(latency)") }
            if let t = nodeTokensPerSecond { guard t > 0 && t.isFinite else { throw ValidationError("--node-tokens-per-second must be > 0, got \(t)") } }
            if bandwidth != nil && nodeTokensPerSecond == nil {
                throw ValidationError("--bandwidth needs --node-tokens-per-second (one node's training tokens/s) for the compute term")
            }
        } else if bandwidth != nil || nodeTokensPerSecond != nil || expertRanks != nil {
            throw ValidationError("--bandwidth, --node-tokens-per-second and --expert-ranks need --parallel")
        }
    }

    /// The architecture to account, from whichever source option was given, and the
    /// sequence length to evaluate it at.
    func architecture() throws -> (ModelArchitecture, sequenceLength: Int) {
        if let path = hfConfig {
            var url = URL(fileURLWithPath: path)
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
                url = url.appendingPathComponent("config.json")
            }
            let config = try HuggingFaceFamilies.load(from: url)
            do {
                return (try ModelArchitecture(huggingFace: config), seq ?? 2048)
            } catch let e as SparseMoEError {
                throw SparseMoEError.file(path: url.path, message: e.description)
            }
        }
        if let spec = config {
            let name = TransformerConfig.presetNames.contains(spec)
                ? spec : URL(fileURLWithPath: spec).deletingPathExtension().lastPathComponent
            let model = try TransformerConfig.load(presetOrPath: spec)
            let t = seq ?? model.maxSequenceLength
            guard t <= model.maxSequenceLength else {
                throw ValidationError("--seq \(t) exceeds the model's max_position_embeddings (\(model.maxSequenceLength))")
            }
            return (try ModelArchitecture(transformer: model, name: name), t)
        }
        throw ValidationError("no model source given")
    }

    func run() throws {
        if let parallel, let spec = config { return try communication(parallel: parallel, spec: spec) }
        if memory, let spec = config {
            let model = try TransformerConfig.load(presetOrPath: spec)
            let t = seq ?? model.maxSequenceLength
            guard t <= model.maxSequenceLength else {
                throw ValidationError("--seq \(t) exceeds the model's max_position_embeddings (\(model.maxSequenceLength))")
            }
            let estimate = try TrainingMemoryEstimate(model: model, batchSize: batchSize, sequenceLength: t,
                                                      checkpointing: ActivationCheckpointing(rawValue: checkpointing)!)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(estimate), as: UTF8.self))
            } else {
                print(FlopsReport.memoryTable(estimate, name: spec))
            }
            return
        }
        let (architecture, t) = try architecture()
        let accounting = try ModelAccounting(architecture, sequenceLength: t)
        if json {
            print(String(decoding: try accounting.jsonData(), as: UTF8.self))
        } else {
            print(FlopsReport.table(accounting))
        }
    }
}

extension Flops {
    /// `--parallel`: the predicted traffic per step and rank (`CommunicationModel`), and with
    /// `--bandwidth` the predicted step time for 8…1024 nodes.
    func communication(parallel: String, spec: String) throws {
        let model = try TransformerConfig.load(presetOrPath: spec)
        let t = seq ?? model.maxSequenceLength
        guard t <= model.maxSequenceLength else {
            throw ValidationError("--seq \(t) exceeds the model's max_position_embeddings (\(model.maxSequenceLength))")
        }
        guard batchSize % ranks == 0 else {
            throw ValidationError("--batch-size \(batchSize) sequences cannot be split evenly over \(ranks) ranks: use a multiple of \(ranks)")
        }
        // Trainable tensors (one statistics flag each): counted on the model itself.
        let trained = try TransformerLM(config: model, seed: 0).namedParameters().filter { $0.tensor.requiresGrad }
        var workload = try CommunicationModel.Workload(transformer: model, parameterTensors: trained.count, batchSize: batchSize,
                                                       sequenceLength: t, microBatches: accumulate)
        workload.gradientBuckets = CommunicationModel.gradientBuckets(tensorSizes: trained.map(\.tensor.count))
        let layout = try parallelLayout(parallel, expertRanks: expertRanks)
        let m = layout.expertRanks(worldSize: ranks)
        let predicted = try CommunicationModel(workload, ranks: ranks, expertRanks: m)
        var lines = ["\(spec): predicted communication per training step and rank, --parallel \(parallel), N = \(ranks) ranks"
                     + (m > 1 ? ", experts over M = \(m)" : "") + ", global batch \(batchSize) × \(t) tokens"
                     + (accumulate > 1 ? " × \(accumulate) micro-batches" : ""),
                     "(payload bytes the library hands to the collectives, sent = received; uniform routing for the all-to-alls)", ""]
        lines.append(FlopsReport.pad("kind", 32, left: true) + FlopsReport.pad("calls", 8) + FlopsReport.pad("bytes", 14) + FlopsReport.pad("ranks", 7))
        for (kind, traffic) in predicted.traffic.sorted(by: { $0.key < $1.key }) {
            lines.append(FlopsReport.pad(kind.name, 32, left: true) + FlopsReport.pad(String(format: "%.0f", traffic.calls), 8)
                         + FlopsReport.pad(String(format: "%.0f", traffic.bytes), 14) + FlopsReport.pad("\(traffic.ranks)", 7))
        }
        lines.append(FlopsReport.pad("total", 32, left: true) + FlopsReport.pad("", 8) + FlopsReport.pad(String(format: "%.0f", predicted.bytesPerStep), 14))
        lines.append("")
        lines.append("parameters \(workload.parameters) trained (\(workload.expertParameters) in routed experts), \(workload.parameterTensors) tensors")
        if let gbps = bandwidth, let nodeTPS = nodeTokensPerSecond {
            // Weak scaling: every rank keeps the tokens per step it has at N = --ranks.
            let localTokens = Double(batchSize * t * accumulate) / Double(ranks)
            let beta = gbps * 1e9 / 8, alpha = latency * 1e-6
            let compute = localTokens / nodeTPS
            lines.append("")
            lines.append(String(format: "predicted step time, %.0f Gb/s links, %.1f µs per message, nodes at %.0f tokens/s, %.0f tokens per node and step (weak scaling):",
                                gbps, latency, nodeTPS, localTokens))
            lines.append(["nodes", "compute ms", "comm ms", "step ms", "efficiency", "tokens/s"].enumerated()
                         .map { FlopsReport.pad($0.element, $0.offset == 0 ? 6 : 12) }.joined())
            var n = 8
            while n <= 1024 {
                var w = workload
                w.tokensPerMicroBatch = Int(localTokens) * n / accumulate
                let mN = min(layout.expertRanks(worldSize: n), n)
                if let model = try? CommunicationModel(w, ranks: n, expertRanks: mN) {
                    let comm = model.seconds(latency: alpha, bandwidth: beta)
                    let step = compute + comm
                    lines.append(FlopsReport.pad("\(n)", 6) + FlopsReport.pad(String(format: "%.1f", compute * 1e3), 12)
                                 + FlopsReport.pad(String(format: "%.1f", comm * 1e3), 12) + FlopsReport.pad(String(format: "%.1f", step * 1e3), 12)
                                 + FlopsReport.pad(String(format: "%.1f%%", 100 * compute / step), 12)
                                 + FlopsReport.pad(String(format: "%.0f", Double(n) * localTokens / step), 12))
                } else {
                    lines.append(FlopsReport.pad("\(n)", 6) + "  (experts do not split over \(mN) ranks)")
                }
                n *= 2
            }
        }
        print(lines.joined(separator: "\n"))
    }
}

/// Human-readable rendering of a `ModelAccounting`.
enum FlopsReport {
    static func count(_ n: Double) -> String {
        let a = abs(n)
        if a >= 1e12 { return String(format: "%.2fT", n / 1e12) }
        if a >= 1e9 { return String(format: "%.2fB", n / 1e9) }
        if a >= 1e6 { return String(format: "%.2fM", n / 1e6) }
        if a >= 1e3 { return String(format: "%.1fK", n / 1e3) }
        return String(format: "%.0f", n)
    }

    static func count(_ n: Int) -> String { count(Double(n)) }

    static func pad(_ s: String, _ w: Int, left: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, w - s.count))
        return left ? s + fill : fill + s
    }

    static func megabytes(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1e6) }

    /// Training memory per layer and in total.
    static func memoryTable(_ e: TrainingMemoryEstimate, name: String) -> String {
        var lines = ["\(name): training memory, batch \(e.batchSize) × \(e.sequenceLength) tokens, checkpointing \(e.checkpointing.rawValue) (float32, AdamW)", ""]
        let widths = [11, 5, 10, 16, 14, 14]
        func row(_ cells: [String]) -> String {
            zip(cells, widths).enumerated().map { i, cw in pad(cw.0, cw.1, left: i < 2) }.joined(separator: " ")
        }
        lines.append(row(["layer", "ffn", "params", "weights+grad+m+v", "activations", "(no ckpt)"]))
        for r in e.rows {
            lines.append(row([r.name, r.kind, count(r.parameters), megabytes(r.stateBytes), megabytes(r.activationBytes),
                              megabytes(r.activationBytesWithoutCheckpointing)]))
        }
        lines.append(row(["total", "", count(e.parameters), megabytes(e.stateBytes), megabytes(e.activationBytes),
                          megabytes(e.activationBytesWithoutCheckpointing)]))
        lines.append("")
        lines.append("backward transient (recomputed layer, logits gradient): \(megabytes(e.backwardBytes))")
        lines.append("analytic peak: \(megabytes(e.totalBytes)) (activations \(String(format: "%.0f", 100 * Double(e.activationBytes) / Double(max(e.activationBytesWithoutCheckpointing, 1))))% of no checkpointing)")
        return lines.joined(separator: "\n")
    }

    static func table(_ a: ModelAccounting) -> String {
        var lines: [String] = []
        lines.append("\(a.name): \(a.layers.count) layers (\(a.moeLayers) MoE), sequence length \(a.sequenceLength)")
        lines.append("")
        let header = ["layer", "ffn", "params", "active", "attention", "router", "experts", "shared", "dense ffn", "fwd FLOP/tok"]
        let widths = [6, 6, 10, 10, 10, 9, 10, 9, 10, 13]
        func row(_ cells: [String]) -> String {
            zip(cells, widths).enumerated().map { i, cw in pad(cw.0, cw.1, left: i < 2) }.joined(separator: " ")
        }
        lines.append(row(header))
        let p = a.params
        lines.append(row(["embed", "", count(p.embedding), count(a.activeParamsBreakdown.embedding), "", "", "", "", "", "0"]))
        for l in a.layers {
            let q = l.params
            lines.append(row(["\(l.index)", l.feedForward, count(l.totalParams), count(l.activeParams), count(q.attention), count(q.router),
                              count(q.routedExperts), count(q.sharedExperts), count(q.denseFeedForward),
                              count(l.flops.forward)]))
        }
        let headParams = p.head + a.params.norms - a.layers.reduce(0) { $0 + $1.params.norms }
        lines.append(row(["head", "", count(headParams), count(headParams), "", "", "", "", "", count(a.flops.head)]))
        lines.append("")
        lines.append("parameters     total \(count(a.totalParams)) (\(a.totalParams))   active per token \(count(a.activeParams)) (\(a.activeParams), \(String(format: "%.1f", 100 * Double(a.activeParams) / Double(a.totalParams)))%)")
        lines.append("  by component embedding \(count(p.embedding)), attention \(count(p.attention)), router \(count(p.router)), routed experts \(count(p.routedExperts)) (active \(count(a.activeParamsBreakdown.routedExperts))), shared experts \(count(p.sharedExperts)), dense ffn \(count(p.denseFeedForward)), norms \(count(p.norms)), head \(count(p.head))")
        let f = a.flops
        lines.append("forward FLOPs per token   \(count(a.forwardFlopsPerToken)) causal, \(count(a.forwardFlopsPerTokenFullAttention)) full attention")
        lines.append("  matmuls      attention projections \(count(f.attentionProjections)), attention scores \(count(f.attentionScoresCausal)) causal / \(count(f.attentionScoresFull)) full, router \(count(f.router)), routed experts \(count(f.routedExperts)), shared experts \(count(f.sharedExperts)), dense ffn \(count(f.denseFeedForward)), head \(count(f.head))")
        lines.append("  non-matmul   \(count(a.nonMatmulFlopsPerToken)) (norms, activations, softmax, RoPE, residuals; not in the totals)")
        lines.append("training FLOPs per token  \(count(a.trainingFlopsPerToken)) causal, \(count(a.trainingFlopsPerTokenFullAttention)) full attention (3 × forward)")
        for (label, d) in [("dense, same active params", a.denseSameActive), ("dense, same total params", a.denseSameTotal)] {
            guard let d else { continue }
            lines.append("\(label): ffn width \(d.intermediateSize), params \(count(d.totalParams)), forward \(count(d.forwardFlopsPerToken))/tok, training \(count(d.trainingFlopsPerToken))/tok; sparse/dense FLOPs \(String(format: "%.3f", d.sparseToDenseFlopRatio)), params \(String(format: "%.3f", d.sparseToDenseParamRatio))")
        }
        return lines.joined(separator: "\n")
    }
}
