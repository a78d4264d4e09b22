import SparseMoECore
import SparseMoEModels

/// Loss of a language model on a dataset split, without training.
public enum LanguageModelEvaluation {
    /// Mean next-token cross-entropy per target token over up to `maxBatches` sequential
    /// batches of `batchSize` windows of `split` (the windows `Trainer.evaluate` uses), with
    /// gradients off. Works for models in any weight dtype.
    public static func causalLoss(_ model: TransformerLM, dataset: TextDataset, split: DatasetSplit = .validation,
                                  batchSize: Int, maxBatches: Int) throws -> Double {
        try loss(model, batches: dataset.evaluationBatches(split, batchSize: batchSize, maxBatches: maxBatches)) {
            ($0.inputs, $0.targets)
        }
    }

    /// Mean cross-entropy per counted target token (targets equal to `MaskedLM.ignoreIndex`
    /// are not counted) over `batches`, each turned into (inputs, targets) by `prepare`,
    /// with gradients off. The loop `Trainer.evaluate` and `causalLoss` share.
    static func loss<S: Sequence>(_ model: TransformerLM, batches: S,
                                  prepare: (LMBatch) throws -> (inputs: Tensor, targets: Tensor)) throws -> Double
        where S.Element == LMBatch {
        var total = 0.0, count = 0
        try withNoGrad {
            for batch in batches {
                let (inputs, targets) = try prepare(batch)
                let out = try model.forward(inputs)
                let (loss, n) = crossEntropyWithCount(out.logits, targets: targets, ignoreIndex: MaskedLM.ignoreIndex)
                total += Double(loss.item) * Double(n)
                count += n
            }
        }
        return count > 0 ? total / Double(count) : .nan
    }
}
