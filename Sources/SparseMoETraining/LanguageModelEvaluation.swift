import Foundation
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

    /// Mean next-token cross-entropy per group of target tokens: `groups(batch)` gives a
    /// group id for each position of the batch, row-major `[B·T]` (the prediction made at
    /// that input position); ids ≥ `groupCount` are not counted. Returns (mean loss, tokens)
    /// per group id, loss NaN for a group without tokens. Gradients off; causal batches.
    public static func causalLossByGroup<S: Sequence>(_ model: TransformerLM, batches: S, groupCount: Int,
                                                      groups: (LMBatch) -> [UInt8]) throws -> [(loss: Double, tokens: Int)]
        where S.Element == LMBatch {
        var total = [Double](repeating: 0, count: groupCount), count = [Int](repeating: 0, count: groupCount)
        try withNoGrad {
            for batch in batches {
                let logits = try model.forward(batch.inputs).logits
                let v = logits.shape[logits.rank - 1]
                let z = logits.scalars, targets = batch.targets.indexScalars, ids = groups(batch)
                precondition(ids.count == targets.count, "one group id per target token")
                for (row, target) in targets.enumerated() where Int(ids[row]) < groupCount {
                    let r = z[(row * v)..<((row + 1) * v)]
                    let m = r.max()!
                    let lse = Double(m) + Foundation.log(r.reduce(0.0) { $0 + Foundation.exp(Double($1 - m)) })
                    total[Int(ids[row])] += lse - Double(r[r.startIndex + Int(target)])
                    count[Int(ids[row])] += 1
                }
            }
        }
        return zip(total, count).map { (loss: $1 > 0 ? $0 / Double($1) : .nan, tokens: $1) }
    }
}
