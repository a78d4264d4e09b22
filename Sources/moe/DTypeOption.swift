import ArgumentParser
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
