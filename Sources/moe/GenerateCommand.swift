import ArgumentParser
import Foundation
import SparseMoE
import SparseMoEServer

/// `moe generate`: autoregressive generation with a KV cache.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate tokens from a model folder (moe train output or Hugging Face), with a KV cache.",
        discussion: """
        The prompt is --tokens (ids) or --prompt TEXT. For a model trained by `moe train` \
        --prompt uses the library's byte tokenizer (and stops at its <eos>). For a Hugging Face \
        folder --prompt uses the folder's tokenizer.json when it is a byte-level BPE (GPT-2 / Llama-3 / Qwen / OLMo / DeepSeek style); without one, \
        and only for models whose vocabulary has at least 256 ids, the UTF-8 bytes of the text are \
        the token ids (the byte fallback; it says so on stderr). Temperature 0 is greedy. \
        Generation stops at --max-new-tokens, at config.json's eos_token_id, or at \
        max_position_embeddings.

        Examples:
          moe generate --model runs/tiny-moe/model --prompt "math: 12+7=" \\
              --max-new-tokens 8
          moe generate --model runs/tiny-moe/model --prompt "rev: abc|" \\
              --temperature 0.8 --top-p 0.9 --seed 1
          moe generate --model path/to/hf-folder --tokens 1,2,3
          moe generate --model path/to/hf-folder --dtype int4 --prompt "Hello"
        """)

    @Option(help: "Model folder (config.json + model.safetensors).")
    var model: String

    @Option(help: "Prompt token ids separated by commas, no spaces, e.g. 1,2,3.")
    var tokens: String?

    @Option(help: "Prompt text (needs tokenizer.json, or a vocabulary of ≥ 256 for the byte fallback).")
    var prompt: String?

    @Option(name: .customLong("max-new-tokens"), help: "Most tokens to generate.")
    var maxNewTokens: Int = 32

    @Option(help: "Sampling temperature; 0 = greedy.")
    var temperature: Float = 0

    @Option(name: .customLong("top-k"), help: "Sample among the k most probable tokens.")
    var topK: Int?

    @Option(name: .customLong("top-p"), help: "Sample within the smallest set of mass ≥ p (nucleus).")
    var topP: Float?

    @Option(help: "Random seed for sampling.")
    var seed: UInt64 = 0

    @Flag(name: .customLong("ignore-eos"), help: "Do not stop at eos_token_id.")
    var ignoreEOS = false

    @OptionGroup var weights: DTypeOption

    @Option(help: "Threads for kernels and BLAS (default: SPARSEMOE_NUM_THREADS or all cores).")
    var threads: Int?

    func validate() throws {
        _ = try weights.choice()
        guard (tokens == nil) != (prompt == nil) else { throw ValidationError("give exactly one of --tokens or --prompt") }
        guard maxNewTokens >= 0 else { throw ValidationError("--max-new-tokens must be ≥ 0") }
        if let tokens { _ = try parseTokenList(tokens) }  // before loading a model
        try SamplingOptions(temperature: temperature, topK: topK, topP: topP).validate()
    }

    func run() throws {
        try applyThreads(threads)
        let folder = try LoadedModelFolder(model, weights: weights)
        let (dir, native, lm) = (folder.directory, folder.native, folder.model)
        // The text codec is read only for a text prompt (or a library model, whose byte
        // tokenizer costs nothing), so that --tokens works on any folder.
        var codec: TextCodec?
        if prompt != nil || native {
            do {
                codec = try TextCodec(directory: dir, native: native, vocabSize: lm.config.vocabSize, rawConfig: folder.rawConfig)
            } catch let TextCodecError.noTokenizer(path, vocab) {
                throw ModelCommandError("--prompt needs \(path) (a byte-level BPE tokenizer.json), or a vocabulary of at least 256 ids for the byte fallback; this model has \(vocab). Use --tokens.")
            }
        }
        let ids: [Int32]
        if let text = prompt, let codec {
            if let note = codec.note { FileHandle.standardError.write(Data("note: \(note)\n".utf8)) }
            ids = try codec.encode(text)
            guard !ids.isEmpty else { throw ModelCommandError("the prompt encodes to no tokens") }
        } else {
            ids = try parseTokenList(tokens!)
        }
        let stop = ignoreEOS ? [] : TextCodec.eosTokens(native: native, rawConfig: folder.rawConfig)
        var sampler = try Sampler(options: SamplingOptions(temperature: temperature, topK: topK, topP: topP), seed: seed)
        let start = Date()
        print("prompt (\(ids.count) tokens): \(ids.map(String.init).joined(separator: ","))")
        let new = try lm.generate(prompt: ids, maxNewTokens: maxNewTokens, sampler: &sampler, stopTokens: stop)
        let seconds = Date().timeIntervalSince(start)
        print("generated (\(new.count) tokens): \(new.map(String.init).joined(separator: ","))")
        if let codec { print("text: \(codec.decode(new))") }
        // Say why generation stopped short of --max-new-tokens.
        let limit = lm.config.maxSequenceLength
        if new.count < maxNewTokens {
            let why = ids.count + new.count >= limit
                ? "the context is full (max_position_embeddings = \(limit); prompt \(ids.count) tokens, \(new.count) generated)"
                : "an end-of-sequence token (\(stop.sorted().map(String.init).joined(separator: ", "))); --ignore-eos continues past it"
            FileHandle.standardError.write(Data("stopped before --max-new-tokens \(maxNewTokens): \(why)\n".utf8))
        }
        FileHandle.standardError.write(Data(String(format: "%.1f tokens/s (%.2f s, prompt included)\n", Double(new.count) / max(seconds, 1e-9), seconds).utf8))
    }
}
