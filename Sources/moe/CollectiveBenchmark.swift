import Foundation
import SparseMoE
import SparseMoEMPI

/// `moe bench --collectives` under mpirun: all-reduces of 1 float to 4 Mi floats through
/// `MPICommunicator` (the path training takes, polling included), the median of `runs` timed
/// calls each after a barrier, and the alpha-beta fit of docs/scale-out.md: an all-reduce of
/// S bytes over N ranks takes 2(N−1)·α + 2(N−1)/N · S/β; α from the 1-float call, β from the
/// largest. Rank 0 prints.
enum CollectiveBenchmark {
    static func run(runs: Int) throws {
        let comm = try MPICommunicator(timeout: 120)
        defer { comm.finalize() }
        let n = comm.size
        func say(_ s: String) { if comm.rank == 0 { print(s); fflush(nil) } }
        guard n > 1 else { say("moe bench --collectives: run it under mpirun with 2 or more ranks"); return }
        say("all-reduce over \(n) ranks, median of \(runs) calls (payload bytes per rank: 2(N-1)/N · 4 · floats):")
        say(pad("floats", 10) + pad("payload B", 14) + pad("median µs", 12) + pad("GB/s", 10))
        var medians: [(floats: Int, seconds: Double)] = []
        for floats in [1, 1024, 65_536, 1 << 20, 1 << 22] {
            var buffer = [Float](repeating: 1, count: floats)
            try comm.allReduceSum(&buffer)  // warm-up
            var times: [Double] = []
            for _ in 0..<runs {
                try comm.barrier()
                let start = DispatchTime.now().uptimeNanoseconds
                try comm.allReduceSum(&buffer)
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
            }
            // Every rank must agree on the time: the slowest rank's median.
            var median = [Float(times.sorted()[times.count / 2])]
            try comm.allReduceSum(&median)  // sum, then the mean over ranks
            let t = Double(median[0]) / Double(n)
            medians.append((floats, t))
            let bytes = CommunicationModel.allReduceBytes(floats: Double(floats), ranks: n)
            say(pad("\(floats)", 10) + pad(String(format: "%.0f", bytes), 14) + pad(String(format: "%.1f", t * 1e6), 12)
                + pad(String(format: "%.3f", bytes / t / 1e9), 10))
        }
        let alpha = medians[0].seconds / Double(2 * (n - 1))
        let big = medians.last!
        let beta = CommunicationModel.allReduceBytes(floats: Double(big.floats), ranks: n) / max(big.seconds - 2 * Double(n - 1) * alpha, 1e-12)
        say(String(format: "alpha-beta fit: latency α = %.1f µs per message, bandwidth β = %.2f GB/s (%.1f Gb/s)", alpha * 1e6, beta / 1e9, beta * 8 / 1e9))
    }
}
