import ArgumentParser
import Foundation
import SparseMoE

/// `moe init`: a Hugging Face model folder with random weights at any size.
struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Write a Hugging Face model folder with random weights for a config.json (any size, any weight dtype).",
        discussion: """
        Reads --hf-config (a Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE or DeepSeek-V3 config.json) \
        and writes --out: config.json, the weights in the Hub's per-expert naming (sharded \
        with model.safetensors.index.json above --shard-size), and a byte-level tokenizer.json \
        (the 256 bytes, then <|extra_N|>, <|endoftext|> last). Weight matrices are uniform \
        with the config's initializer_range as standard deviation, norms 1, biases 0; the same \
        --seed gives the same files. Tensors are made and written one at a time, so the model \
        never has to fit in memory; int4 and int8 are written directly (layout: docs/inference.md).

        Examples:
          moe init --hf-config olmoe-config.json --dtype bf16 --out models/olmoe-random
          moe init --hf-config qwen3-30b-a3b.json --dtype int4 --out models/qwen3-int4
        """)

    @Option(name: .customLong("hf-config"), help: "config.json of a supported Hugging Face MoE family.")
    var hfConfig: String

    @Option(help: "Weight dtype of the matrices: f32, bf16, f16, int8 or int4 (norms, biases, routers stay f32).")
    var dtype: String = "bf16"

    @Flag(name: .customLong("experts-only"), help: "Apply --dtype to the routed experts only; other matrices are bf16.")
    var expertsOnly = false

    @Option(help: "Output folder (must not exist, unless --force).")
    var out: String

    @Flag(help: "Replace an existing --out folder.")
    var force = false

    @Option(help: "Random seed.")
    var seed: UInt64 = 0

    @Option(name: .customLong("shard-size"), help: "Largest shard in GiB (a larger model is sharded with an index).")
    var shardSize: Double = 4

    func validate() throws {
        _ = try weightChoice()
        guard shardSize > 0 else { throw ValidationError("--shard-size must be > 0 GiB, got \(shardSize)") }
    }

    func weightChoice() throws -> WeightDTypeChoice {
        do { return WeightDTypeChoice(dtype: try DType(weightFormat: dtype), expertsOnly: expertsOnly) } catch {
            throw ValidationError("--dtype: \(error)")
        }
    }

    func run() throws {
        let configURL = URL(fileURLWithPath: hfConfig)
        let family = try HuggingFaceFamilies.load(from: configURL)
        let raw: [String: JSONValue]
        do { raw = try JSONDecoder().decode([String: JSONValue].self, from: Data(contentsOf: configURL)) } catch {
            throw ModelCommandError("\(configURL.path): expected one JSON object of fields (\(error.localizedDescription))")
        }
        let outURL = try prepareOutputFolder(out, force: force)
        let started = Date()
        try RandomCheckpoint.write(hfConfig: family, rawConfig: raw, dtypes: weightChoice(), seed: seed, to: outURL,
                                   maxShardBytes: Int(shardSize * Double(1 << 30))) { done, total in
            let seconds = Date().timeIntervalSince(started)
            let eta = done > 0 ? seconds * Double(total - done) / Double(done) : 0
            printError(String(format: "[init] %@ of %@ bytes written (%.0f%%), %@ elapsed, ETA %@", humanCount(Double(done)),
                              humanCount(Double(total)), 100 * Double(done) / Double(max(total, 1)), clock(seconds), clock(eta)))
        }
        print("wrote \(outURL.path) (\(family.modelType), \(dtype)\(expertsOnly ? " experts" : "")) in \(clock(Date().timeIntervalSince(started)))")
    }
}

/// Throws unless `path` can be the output folder: a regular file is refused, and so is a
/// folder that holds anything, unless `force`. Run it before the work, so that a refusal
/// costs nothing.
func checkOutputFolder(_ path: String, force: Bool) throws {
    let url = URL(fileURLWithPath: path)
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else { return }
    guard isDir.boolValue else { throw ModelCommandError("--out \(url.path) is a file, expected a folder to create") }
    let contents = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
    guard contents.isEmpty || force else {
        throw ModelCommandError("--out \(url.path) already exists and holds \(contents.count) entries; choose another folder or pass --force to replace it")
    }
}

/// The output folder, checked (`checkOutputFolder`), emptied when `force` and created. Returns its URL.
func prepareOutputFolder(_ path: String, force: Bool) throws -> URL {
    try checkOutputFolder(path, force: force)
    let url = URL(fileURLWithPath: path)
    let fm = FileManager.default
    if force, fm.fileExists(atPath: url.path), !((try? fm.contentsOfDirectory(atPath: url.path)) ?? []).isEmpty {
        try fm.removeItem(at: url)
    }
    try fm.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
