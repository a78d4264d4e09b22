import ArgumentParser
import Foundation
import SparseMoE

/// `moe prune`: remove the least-used experts of each MoE layer, measured on calibration text.
struct Prune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove the least-used routed experts of every MoE layer (usage measured on calibration text).",
        discussion: """
        Runs the calibration text (tokenized as `moe eval` does; the first 90 % of it, \
        --calibration-batches batches of windows) through --model and counts the tokens \
        each expert computes. Each layer keeps its --keep most-used experts, or (--min-share X) \
        as many as the layer needing the most keeps for experts with at least X of its \
        assignments (never fewer than top-k). Router rows go with their experts, so routing \
        renormalises over the survivors. Writes a loadable folder of the same kind (weights \
        in their stored dtypes) and \
        reports the validation loss (last 10 % of the text) before and after, and the \
        bytes saved. Not for group-limited (n_group > 1) or hash routing.

        Examples:
          moe prune --model runs/tiny-moe/model --calibration shakespeare.txt --keep 6 --out runs/tiny-pruned
          moe prune --model models/olmoe --calibration notes.txt --min-share 0.01 --out models/olmoe-pruned
        """)

    @Option(help: "Model folder to read (never modified).") var model: String
    @Option(help: "Calibration text file.") var calibration: String
    @Option(help: "Experts each layer keeps.") var keep: Int?
    @Option(name: .customLong("min-share"), help: "Keep experts with at least this share of a layer's assignments.")
    var minShare: Double?
    @Option(help: "Output folder (must not exist, unless --force).") var out: String
    @Flag(help: "Replace an existing --out folder.") var force = false
    @Option(name: .customLong("sequence-length"), help: "Tokens per window.") var sequenceLength: Int = 128
    @Option(name: .customLong("batch-size"), help: "Windows per batch.") var batchSize: Int = 16
    @Option(name: .customLong("calibration-batches"), help: "Batches of calibration windows.") var calibrationBatches: Int = 8
    @Option(help: "Threads for kernels and BLAS (default: SPARSEMOE_NUM_THREADS or all cores).") var threads: Int?

    func validate() throws {
        guard (keep == nil) != (minShare == nil) else { throw ValidationError("give exactly one of --keep N or --min-share X") }
        if let keep, keep < 1 { throw ValidationError("--keep must be ≥ 1, got \(keep)") }
        if let minShare, !(minShare > 0 && minShare < 1) { throw ValidationError("--min-share must be in (0, 1), got \(minShare)") }
        guard sequenceLength >= 1, batchSize >= 1, calibrationBatches >= 1 else {
            throw ValidationError("--sequence-length, --batch-size and --calibration-batches must be ≥ 1")
        }
    }

    func run() throws {
        try applyThreads(threads)
        let source = URL(fileURLWithPath: model).standardizedFileURL
        let target = URL(fileURLWithPath: out).standardizedFileURL
        guard source.path != target.path else { throw ModelCommandError("--out would overwrite --model; choose another folder") }
        try checkOutputFolder(out, force: force)
        let native = ModelFiles.isNative(source)
        let hf = native ? nil : try HuggingFaceModel.load(directory: source, dtypes: .asStored)
        let lm = try hf?.model ?? ModelLoader.load(directory: source, dtypes: .asStored)
        guard let moe = lm.config.moe else { throw ModelCommandError("\(source.path) has no MoE layers to prune") }
        let data = try Eval.dataset(calibration, model: source, vocabulary: lm.config.vocabSize, sequenceLength: sequenceLength,
                                    validationFraction: 0.1)
        let batches = try data.evaluationBatches(.train, batchSize: batchSize, maxBatches: calibrationBatches).map(\.inputs)
        printError("[prune] counting expert usage on \(batches.count) batches of \(batchSize)×\(sequenceLength) tokens")
        let usage = try ExpertPruning.usage(lm, batches: batches)
        let kept = keep ?? ExpertPruning.keepCount(usage: usage, minShare: minShare!, topK: moe.topK)
        let survivors = ExpertPruning.survivors(usage: usage, keep: kept)
        let pruned = try ExpertPruning.prune(lm, survivors: survivors)
        for (i, (counts, s)) in zip(usage, survivors).enumerated() {
            let total = max(counts.reduce(0, +), 1)
            let share = Double(s.reduce(0) { $0 + counts[$1] }) / Double(total)
            printError(String(format: "[prune] MoE layer %d: keeps %d of %d experts, %.1f%% of calibration assignments", i, kept, counts.count, 100 * share))
        }
        let before = try LanguageModelEvaluation.causalLoss(lm, dataset: data, batchSize: batchSize, maxBatches: calibrationBatches)
        let after = try LanguageModelEvaluation.causalLoss(pruned, dataset: data, batchSize: batchSize, maxBatches: calibrationBatches)
        let outURL = try prepareOutputFolder(out, force: force)
        if let hf {
            var extra: [String: JSONValue] = [:]
            for key in ["bos_token_id", "eos_token_id", "pad_token_id"] { extra[key] = hf.rawConfig[key] }
            try HuggingFaceModel.save(pruned, to: outURL, architecture: type(of: hf.hfConfig), extraConfig: extra)
            for name in HuggingFaceModel.companionFiles {
                if let d = FileManager.default.contents(atPath: source.appendingPathComponent(name).path) {
                    try AtomicFile.write(d, to: outURL.appendingPathComponent(name))
                }
            }
        } else {
            try ModelFiles.save(pruned, to: outURL)
        }
        let (b0, b1) = (lm.weightStorage.bytes, pruned.weightStorage.bytes)
        print(String(format: "experts per layer %d → %d; validation loss %.4f → %.4f (%+.4f); weights %@B → %@B (%.1f%% saved)",
                     moe.numExperts, kept, before, after, after - before, humanCount(Double(b0)), humanCount(Double(b1)),
                     100 * (1 - Double(b1) / Double(max(b0, 1)))))
        print("wrote \(outURL.path)")
    }
}
