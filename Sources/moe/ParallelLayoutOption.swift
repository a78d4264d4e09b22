import ArgumentParser
import SparseMoE

/// The layout `--parallel` and `--expert-ranks` ask for (`moe train`, `moe flops`): data,
/// expert, or data,expert with M ranks per expert group; --expert-ranks only with both.
func parallelLayout(_ parallel: String, expertRanks: Int?) throws -> ParallelLayout {
    let parts = Set(parallel.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
    switch parts {
    case ["data"], ["expert"]:
        if expertRanks != nil {
            throw ValidationError("--expert-ranks is for --parallel data,expert (with --parallel \(parallel) it is fixed: \(parallel == "data" ? "1" : "all ranks"))")
        }
        return parts == ["data"] ? .data : .expert
    case ["data", "expert"]:
        guard let m = expertRanks else { throw ValidationError("--parallel data,expert needs --expert-ranks M (ranks per expert group, dividing the ranks)") }
        guard m >= 1 else { throw ValidationError("--expert-ranks must be ≥ 1, got \(m)") }
        return .dataExpert(expertRanks: m)
    default:
        throw ValidationError("--parallel must be data, expert or data,expert, got '\(parallel)'")
    }
}
