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
        var sums = GroupedLoss(groupCount: groupCount)
        try withNoGrad {
            for batch in batches {
                sums.add(logits: try model.forward(batch.inputs).logits, targets: batch.targets, groups: groups(batch))
            }
        }
        return sums.means
    }
}

/// Running sums of cross-entropy per group of rows: −log softmax(logits[row])[target] added
/// to the row's group, for `causalLossByGroup` and evaluations that read the same forward for
/// more than the loss.
public struct GroupedLoss {
    private var total: [Double], count: [Int]

    public init(groupCount: Int) {
        total = [Double](repeating: 0, count: groupCount)
        count = [Int](repeating: 0, count: groupCount)
    }

    /// Adds the rows of `logits [..., V]` with their `targets` (int32, one per row) and group
    /// ids (one per row); rows whose id is ≥ the group count are skipped.
    public mutating func add(logits: Tensor, targets: Tensor, groups: [UInt8]) {
        let v = logits.shape[logits.rank - 1]
        let logProbs = logSoftmax(logits).scalars, t = targets.indexScalars
        precondition(groups.count == t.count && t.count * v == logProbs.count, "one target and one group id per row")
        for (row, target) in t.enumerated() where Int(groups[row]) < total.count {
            total[Int(groups[row])] -= Double(logProbs[row * v + Int(target)])
            count[Int(groups[row])] += 1
        }
    }

    /// (mean loss, rows) per group; NaN for a group without rows.
    public var means: [(loss: Double, tokens: Int)] {
        zip(total, count).map { (loss: $1 > 0 ? $0 / Double($1) : .nan, tokens: $1) }
    }
}
