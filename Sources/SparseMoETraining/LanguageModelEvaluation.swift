import SparseMoECore
import SparseMoEModels

/// Loss of a language model on a dataset split, without training.
public enum LanguageModelEvaluation {
    /// Mean next-token cross-entropy per target token over up to `maxBatches` sequential
    /// batches of `batchSize` windows of `split` (the windows `Trainer.evaluate` uses), with
    /// gradients off. Works for models in any weight dtype.
    public static func causalLoss(_ model: TransformerLM, dataset: TextDataset, split: DatasetSplit = .validation,
                                  batchSize: Int, maxBatches: Int) throws -> Double {
        var total = 0.0, count = 0
        try withNoGrad {
            for batch in try dataset.evaluationBatches(split, batchSize: batchSize, maxBatches: maxBatches) {
                let out = try model.forward(batch.inputs)
                let (loss, n) = crossEntropyWithCount(out.logits, targets: batch.targets, ignoreIndex: MaskedLM.ignoreIndex)
                total += Double(loss.item) * Double(n)
                count += n
            }
        }
        return count > 0 ? total / Double(count) : .nan
    }
}
