import Foundation
import SparseMoECore

/// Hugging Face model folders with random weights at any size, written tensor by tensor:
/// what everyone can measure at real shapes without downloading a checkpoint.
///
/// The folder holds `config.json` (the given one, with `torch_dtype` and, for int8/int4,
/// `quantization_config` set), the weights in the Hub's per-expert naming, sharded with an
/// index when larger than one shard (`ShardedCheckpointWriter`), and, when the vocabulary
/// has room for the 256 bytes, a merge and an eos, a `tokenizer.json` (`byteTokenizerJSON`;
/// `eos_token_id` then set to its `<|endoftext|>`). Weight matrices are uniform with the config's
/// `initializer_range` as standard deviation (`Tensor.hashedUniform`, seeded per tensor
/// name), norms 1, biases 0; each tensor is made in float32, converted to its dtype and
/// written, so a model never has to fit in memory (int4 is written directly).
public enum RandomCheckpoint {
    /// Writes the folder for `hfConfig` (the decoded config.json: `HuggingFaceFamilies.load`)
    /// with `rawConfig` as config.json's fields. `progress(bytesWritten, totalBytes)` after each shard.
    public static func write(hfConfig: any HuggingFaceFamily, rawConfig: [String: JSONValue], dtypes: WeightDTypeChoice,
                             seed: UInt64 = 0, to directory: URL, maxShardBytes: Int = 4 << 30,
                             progress: ((Int, Int) -> Void)? = nil) throws {
        let config = try hfConfig.transformerConfig()
        let model = try TransformerLM.placeholder(config: config)
        let roles = model.weightRoles()
        let map = HFWeightMap(names: type(of: hfConfig).weightNames, numExperts: hfConfig.common.numExperts)
        let views = map.checkpointTensors(of: model.namedParameters())
        var entries: [ShardedCheckpointWriter.Entry] = []
        var sources: [String: Tensor] = [:]
        for (name, view) in views {
            let role = map.libraryName(of: name).flatMap { roles[$0.name] } ?? .float32
            entries.append(.init(name: name, shape: view.shape, dtype: dtypes.dtype(for: role, stored: .bfloat16)))
            sources[name] = view
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let std = config.initStd
        try ShardedCheckpointWriter.write(entries, to: directory, maxShardBytes: maxShardBytes, produce: { entry in
            let view = sources[entry.name]!
            // Placeholders are the randomly initialised matrices; norms and biases are real (1 and 0).
            let values = view.isPlaceholder
                ? Tensor.hashedUniform(entry.shape, std: std, seed: seed ^ fnv1a(entry.name)) : view.copy()
            return values.converted(to: entry.dtype)
        }, progress: progress)
        var json = rawConfig
        json.merge(HuggingFaceModel.weightDTypeConfig(
            counts: entries.reduce(into: [:]) { $0[$1.dtype, default: 0] += $1.shape.reduce(1, *) }),
                   uniquingKeysWith: { new, _ in new })
        // The tokenizer written here has its <|endoftext|> at V−1: config.json must say so
        // (a copied eos id would point at one of its padding tokens).
        if config.vocabSize >= 258 { json["eos_token_id"] = .int(config.vocabSize - 1) }
        try AtomicFile.write(Data((HuggingFaceModel.configText(.object(json)) + "\n").utf8),
                             to: directory.appendingPathComponent(HuggingFaceModel.configFileName))
        if config.vocabSize >= 258 {
            try AtomicFile.write(byteTokenizerJSON(vocabSize: config.vocabSize),
                                 to: directory.appendingPathComponent("tokenizer.json"))
        }
    }

    /// A byte-level BPE tokenizer.json for a vocabulary of `vocabSize` ≥ 258: the 256 bytes
    /// (ids 0–255, in GPT-2's printable byte alphabet), one merge (" t" → 256: llama.cpp's
    /// converter refuses a BPE vocabulary without merges), `<|extra_N|>` tokens up to id V−2
    /// and `<|endoftext|>` at V−1 (the eos). Text encodes to its UTF-8 bytes, " t" to 256.
    public static func byteTokenizerJSON(vocabSize: Int) -> Data {
        var vocab: [String: Int] = [:]
        for (b, c) in ByteLevelBPETokenizer.byteToChar.enumerated() { vocab[String(c)] = b }
        let space = String(ByteLevelBPETokenizer.byteToChar[32])
        let merges: [String] = vocabSize > 257 ? ["\(space) t"] : []
        if vocabSize > 257 { vocab[space + "t"] = 256 }
        for id in (merges.isEmpty ? 256 : 257)..<max(257, vocabSize - 1) { vocab["<|extra_\(id - 256)|>"] = id }
        let eos = "<|endoftext|>"
        if vocabSize > 256 { vocab[eos] = vocabSize - 1 }
        let object: [String: Any] = [
            "version": "1.0",
            "added_tokens": vocabSize > 256 ? [["id": vocabSize - 1, "content": eos, "single_word": false, "lstrip": false,
                                                "rstrip": false, "normalized": false, "special": true]] : [],
            "normalizer": NSNull(),
            "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
            "post_processor": NSNull(),
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": "",
                      "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges] as [String: Any],
        ]
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
    }

    /// FNV-1a of a tensor name: its seed offset.
    static func fnv1a(_ s: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return h
    }
}
