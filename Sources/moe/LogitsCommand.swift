import ArgumentParser
import Foundation
import SparseMoE

/// A run-time failure of a model command (printed without the usage text).
struct ModelCommandError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Parses `--tokens` (`TokenList`: ids separated by commas, no spaces); errors are usage errors.
func parseTokenList(_ s: String) throws -> [Int32] {
    do { return try TokenList.parse(s) } catch let e as SparseMoEError { throw ValidationError(e.description) }
}

/// `moe logits`: the logits of every position of a token sequence.
struct Logits: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the logits of every position for a token sequence (moe train output or Hugging Face folder).",
        discussion: """
        The folder holds config.json and model.safetensors (or a sharded index) of a Mixtral, \
        Qwen2-MoE, Qwen3-MoE, OLMoE or DeepSeek-V3 checkpoint, or one written by the library. \
        Human output: per position, the input token and the top-5 next-token ids with their \
        logits. --json prints one object {"logits": [[...], ...]} (positions × vocabulary).

        Examples:
          moe logits --model runs/tiny-moe/model --tokens 1,2,3
          moe logits --model Qwen3-MoE-tiny --tokens 151643,872 --json > logits.json
          moe logits --model Qwen3-MoE-tiny --tokens 151643,872 --dtype int8
        """)

    @Option(help: "Model folder (config.json + model.safetensors).")
    var model: String

    @Option(help: "Token ids separated by commas, no spaces, e.g. 1,2,3.")
    var tokens: String

    @Flag(help: "Print {\"logits\": [[...], ...]} instead of the summary.")
    var json = false

    @OptionGroup var weights: DTypeOption

    @Option(help: "Threads for kernels and BLAS (default: SPARSEMOE_NUM_THREADS or all cores).")
    var threads: Int?

    func run() throws {
        try applyThreads(threads)
        let ids = try parseTokenList(tokens)
        let lm = try ModelLoader.load(directory: URL(fileURLWithPath: model), dtypes: weights.choice())
        let v = lm.config.vocabSize
        if let bad = ids.first(where: { Int($0) >= v }) {
            throw ModelCommandError("token \(bad) is outside the vocabulary 0..<\(v)")
        }
        let out = try lm.forward(Tensor(indices: ids, shape: [1, ids.count]))
        let values = out.logits.scalars
        if json {
            var text = "{\"logits\": ["
            for t in 0..<ids.count {
                if t > 0 { text += ", " }
                text += "[" + (0..<v).map { "\(values[t * v + $0])" }.joined(separator: ", ") + "]"
            }
            print(text + "]}")
            return
        }
        print("\(lm.config.moe == nil ? "dense" : "MoE") model: \(ids.count) tokens, vocabulary \(v)")
        for t in 0..<ids.count {
            let row = Array(values[(t * v)..<((t + 1) * v)])
            let top = row.indices.sorted { row[$0] != row[$1] ? row[$0] > row[$1] : $0 < $1 }.prefix(5)
            let cells = top.map { String(format: "%d (%.4f)", $0, row[$0]) }.joined(separator: "  ")
            print(String(format: "%4d  token %-6d top-5: ", t, ids[t]) + cells)
        }
    }
}
