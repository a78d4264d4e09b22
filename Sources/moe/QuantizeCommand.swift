import ArgumentParser
import Foundation
import SparseMoE

/// `moe quantize`: a model folder with its weights stored as int8 or int4.
struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a copy of a model folder with int8 or int4 weights (loaded directly by generate, logits, bench).",
        discussion: """
        Reads --model (a Hugging Face folder, or one written by `moe train`, which is written \
        as the closest Hugging Face architecture) and writes --out: config.json with a \
        quantization_config, the quantized matrices with their scales in `<weight>_scale` \
        tensors (int8: a float32 scale per row; int4: groups of 32 along each row, a float16 \
        scale per group; layout in docs/inference.md), and the tokenizer and generation files. \
        Norms, biases and router weights stay float32; --experts-only quantizes the routed \
        experts alone and keeps the other matrices as stored. The original folder is never \
        modified.

        Examples:
          moe quantize --model models/olmoe-bf16 --to int4 --out models/olmoe-int4
          moe quantize --model runs/tiny-moe/model --to int8 --experts-only --out runs/tiny-int8
        """)

    @Option(help: "Model folder to read.")
    var model: String

    @Option(help: "int8 or int4 (also bf16, f16, f32: a plain conversion).")
    var to: String

    @Flag(name: .customLong("experts-only"), help: "Quantize the routed experts only.")
    var expertsOnly = false

    @Option(help: "Output folder (must not exist, unless --force).")
    var out: String

    @Flag(help: "Replace an existing --out folder.")
    var force = false

    @Option(help: "Threads for kernels and BLAS (default: SPARSEMOE_NUM_THREADS or all cores).")
    var threads: Int?

    func validate() throws {
        do { _ = try DType(weightFormat: to) } catch { throw ValidationError("--to: \(error)") }
    }

    func run() throws {
        try applyThreads(threads)
        let source = URL(fileURLWithPath: model).standardizedFileURL
        let target = URL(fileURLWithPath: out).standardizedFileURL
        guard source.path != target.path, !source.path.hasPrefix(target.path + "/") else {
            throw ModelCommandError("--out \(target.path) would overwrite --model; the original folder is never modified: choose another folder")
        }
        try checkOutputFolder(out, force: force)
        let choice = WeightDTypeChoice(dtype: try DType(weightFormat: to), expertsOnly: expertsOnly)
        let started = Date()
        printError("[quantize] loading \(source.path) as \(to)\(expertsOnly ? " (experts only)" : "")")
        let before = try ModelDirectorySize.bytes(of: source)
        let outURL: URL
        if ModelFiles.isNative(source) {
            let lm = try ModelLoader.load(directory: source, dtypes: choice)
            outURL = try prepareOutputFolder(out, force: force)
            try HuggingFaceModel.save(lm, to: outURL)
        } else {
            let hf = try HuggingFaceModel.load(directory: source, dtypes: choice)
            outURL = try prepareOutputFolder(out, force: force)
            try hf.save(to: outURL)
        }
        let after = try ModelDirectorySize.bytes(of: outURL)
        print(String(format: "wrote %@: weights %@B → %@B (%.2f×) in %@", outURL.path, humanCount(Double(before)),
                     humanCount(Double(after)), Double(after) / Double(max(before, 1)), clock(Date().timeIntervalSince(started))))
    }
}

/// Bytes of the safetensors files of a model folder.
enum ModelDirectorySize {
    static func bytes(of directory: URL) throws -> Int {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasSuffix(".safetensors") }.reduce(0) { sum, name in
            let attributes = try? FileManager.default.attributesOfItem(atPath: directory.appendingPathComponent(name).path)
            return sum + ((attributes?[.size] as? NSNumber)?.intValue ?? 0)
        }
    }
}
