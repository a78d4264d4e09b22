import ArgumentParser
import Foundation
import SparseMoE

/// `moe eval`: validation loss of a model folder on a text file, in one or more weight dtypes.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Validation loss of a model folder on a text file, per weight dtype (what quantizing costs).",
        discussion: """
        The text is tokenized as the model expects (models written by `moe train`: bytes; \
        Hugging Face folders: their tokenizer.json, else bytes when the vocabulary has ≥ 256 \
        ids) and split as `moe train` splits it (the last --validation-fraction is validation). \
        The loss is the mean next-token cross-entropy over --batches batches of --batch-size \
        windows of --sequence-length tokens, the windows `moe train` evaluates on when the \
        values match its run. Each --dtype is loaded from the folder and converted; the \
        difference to the first is printed.

        Examples:
          moe eval --model runs/tiny-moe/model --data shakespeare.txt --dtype f32,bf16,int8,int4
          moe eval --model models/olmoe-int4 --data notes.txt --json
        """)

    @Option(help: "Model folder.") var model: String
    @Option(help: "Text file.") var data: String
    @Option(help: "Weight dtypes, comma-separated (f32, bf16, f16, int8, int4; default: as stored).") var dtype: String?
    @Flag(name: .customLong("experts-only"), help: "Convert only the routed experts to --dtype.") var expertsOnly = false
    @Option(name: .customLong("sequence-length"), help: "Tokens per window.") var sequenceLength: Int = 128
    @Option(name: .customLong("batch-size"), help: "Windows per batch.") var batchSize: Int = 16
    @Option(help: "Batches evaluated.") var batches: Int = 8
    @Option(name: .customLong("validation-fraction"), help: "Fraction of the text at its end used for validation.")
    var validationFraction: Double = 0.1
    @Flag(help: "One JSON object per dtype.") var json = false
    @Option(help: "Threads for kernels and BLAS (default: SPARSEMOE_NUM_THREADS or all cores).") var threads: Int?

    func validate() throws {
        guard sequenceLength >= 1, batchSize >= 1, batches >= 1 else {
            throw ValidationError("--sequence-length, --batch-size and --batches must be ≥ 1")
        }
        guard validationFraction > 0, validationFraction < 1 else {
            throw ValidationError("--validation-fraction must be in (0, 1), got \(validationFraction)")
        }
        for d in dtype?.split(separator: ",") ?? [] {
            do { _ = try DType(weightFormat: String(d)) } catch { throw ValidationError("--dtype: \(error)") }
        }
    }

    struct Row: Encodable {
        let dtype: String
        let validation_loss: Double
        let delta: Double
        let weights_bytes: Int
        let tokens: Int
    }

    func run() throws {
        try applyThreads(threads)
        let dir = URL(fileURLWithPath: model)
        let dtypes: [DType?] = try dtype.map { try $0.split(separator: ",").map { try DType(weightFormat: String($0)) } } ?? [nil]
        var first: Double?
        var dataset: TextDataset?
        for d in dtypes {
            let lm = try ModelLoader.load(directory: dir, dtypes: WeightDTypeChoice(dtype: d, expertsOnly: expertsOnly))
            if dataset == nil { dataset = try Self.dataset(data, model: dir, vocabulary: lm.config.vocabSize, sequenceLength: sequenceLength,
                                                          validationFraction: validationFraction) }
            let loss = try LanguageModelEvaluation.causalLoss(lm, dataset: dataset!, batchSize: batchSize, maxBatches: batches)
            first = first ?? loss
            let row = Row(dtype: d?.rawValue ?? "stored", validation_loss: loss, delta: loss - first!, weights_bytes: lm.weightStorage.bytes,
                          tokens: min(batches * batchSize, dataset!.evaluationWindowCount(.validation)) * sequenceLength)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                print(String(decoding: try encoder.encode(row), as: UTF8.self))
            } else {
                print(String(format: "%@  validation loss %.4f  (%+.4f)  weights %@B", pad(row.dtype, -6), loss, row.delta,
                             humanCount(Double(row.weights_bytes))))
            }
        }
    }

    /// The text as the model's tokens.
    static func dataset(_ path: String, model dir: URL, vocabulary: Int, sequenceLength: Int, validationFraction: Double) throws -> TextDataset {
        let tokenizerURL = dir.appendingPathComponent("tokenizer.json")
        if !ModelFiles.isNative(dir), FileManager.default.fileExists(atPath: tokenizerURL.path) {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ModelCommandError("--data \(path): cannot be read as UTF-8 text")
            }
            let tokens = try ByteLevelBPETokenizer(url: tokenizerURL).encode(text)
            return try TextDataset(tokens: tokens, sequenceLength: sequenceLength, validationFraction: validationFraction)
        }
        guard vocabulary >= 256 else {
            throw ModelCommandError("the model's vocabulary has \(vocabulary) ids and \(dir.path) has no tokenizer.json: byte tokens need ≥ 256")
        }
        return try TextDataset(contentsOf: path, sequenceLength: sequenceLength, validationFraction: validationFraction)
    }
}
