/// The compute-optimal frontier of a set of training runs: the runs no cheaper run beats,
/// i.e. each run whose loss is lower than that of every run with less compute (Kaplan et
/// al. 2020, Hoffmann et al. 2022). A power law L(C) fitted to these is the frontier's law.
public enum ComputeFrontier {
    /// Indices of the frontier runs, ordered by compute (ties: the lower loss only).
    /// Runs with a non-finite compute or loss are left out. O(m log m).
    public static func indices(compute: [Double], loss: [Double]) -> [Int] {
        precondition(compute.count == loss.count, "ComputeFrontier: one loss per compute")
        let order = compute.indices.filter { compute[$0].isFinite && loss[$0].isFinite }
            .sorted { compute[$0] != compute[$1] ? compute[$0] < compute[$1] : loss[$0] < loss[$1] }
        var out: [Int] = []
        var bestLoss = Double.infinity
        for i in order where loss[i] < bestLoss {
            out.append(i)
            bestLoss = loss[i]
        }
        return out
    }
}
