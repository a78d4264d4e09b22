import ArgumentParser
import Foundation
import SparseMoE

/// `--dtype`: the storage dtype of the weights when a model is loaded for inference.
struct DTypeOption: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Weight storage: f32, bf16, f16, int8 or int4 (default: as stored in the files).",
        discussion: "Converted on load where it differs from the files; norms, biases and router weights stay f32. Activations and accumulation are always f32."))
    var dtype: String?

    /// The choice this option makes.
    func choice() throws -> WeightDTypeChoice {
        guard let dtype else { return .asStored }
        do { return WeightDTypeChoice(dtype: try DType(weightFormat: dtype)) } catch {
            throw ValidationError("--dtype: \(error)")
        }
    }
}

/// A model folder loaded for text work: the model, and for a Hugging Face folder its raw
/// config.json (eos ids, tokenizer), which `TextCodec` reads.
struct LoadedModelFolder {
    let directory: URL
    let native: Bool
    let model: TransformerLM
    let rawConfig: [String: JSONValue]?

    /// Loads `path` (a `moe train` model or a Hugging Face folder) in the dtypes `weights` asks for.
    init(_ path: String, weights: DTypeOption) throws {
        directory = URL(fileURLWithPath: path)
        native = ModelFiles.isNative(directory)
        let dtypes = try weights.choice()
        let loaded = native ? nil : try HuggingFaceModel.load(directory: directory, dtypes: dtypes)
        model = try loaded?.model ?? ModelLoader.load(directory: directory, dtypes: dtypes)
        rawConfig = loaded?.rawConfig
    }
}
