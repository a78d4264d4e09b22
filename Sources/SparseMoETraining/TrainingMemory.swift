import SparseMoECore
import SparseMoEModels

/// Whether training a model fits in memory, checked before the model, the optimiser
/// state or a batch is allocated.
extension TrainingConfig {
    /// Throws `invalidConfig` when training `model` with these settings needs more bytes
    /// than are available. The estimate is a lower bound, in float32 values:
    ///
    ///   parameters × (4 − `allocatedCopies`)  (weights, gradients, AdamW m and v; copies
    ///                                           already allocated are left out)
    ///   + 2·B·T·V                              (one micro-batch's logits and their gradient)
    ///   + 4·B·T·C·layers                       (at least four activations of width C per layer)
    ///
    /// The field named is the model field behind most parameters when the parameter terms
    /// alone do not fit, else `batch_size` when the batch terms are the larger part.
    public func checkMemory(model: TransformerConfig, allocatedCopies: Int = 0, availableBytes: Int? = nil) throws {
        func p(_ xs: Int...) -> Int { MemoryBudget.product(xs) }
        let params = model.parameterLowerBound
        let state = p(params, max(0, 4 - allocatedCopies), 4)
        let tokens = p(batchSize, sequenceLength)
        let batch = MemoryBudget.sum([p(2, tokens, model.vocabSize, 4), p(4, tokens, model.hiddenSize, max(model.numLayers, 0), 4)])
        let total = MemoryBudget.sum([state, batch])
        // The model's field when its parameters alone do not fit, else the larger part.
        let have = availableBytes ?? MemoryBudget.available().bytes
        let field = state <= have && batch > state ? "batch_size" : model.dominantField
        try MemoryBudget.check(
            total,
            for: "training (at least: \(MemoryBudget.describe(state)) for the parameters, their gradients and AdamW moments; "
                + "\(MemoryBudget.describe(batch)) for one micro-batch of \(batchSize)×\(sequenceLength) tokens — logits over \(model.vocabSize) ids and activations of width \(model.hiddenSize) in \(model.numLayers) layers — together",
            field: field, availableBytes: availableBytes)
    }
}
