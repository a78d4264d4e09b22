import ArgumentParser
import Foundation
import SparseMoE

struct MoE: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moe",
        abstract: "Sparse mixture-of-experts transformers on the CPU: build, train, measure.",
        discussion: """
        Start with `moe train` (the main job), then `moe generate --model runs/tiny-moe/model`.

        Threads: --threads N on any subcommand, or SPARSEMOE_NUM_THREADS=N in the
        environment, sets the number of threads every kernel and GEMM uses.
        """,
        version: SparseMoE.version,
        subcommands: [Train.self, Generate.self, Logits.self, Flops.self, Bench.self, Info.self]
    )
}

/// Prints the library version and the thread configuration.
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the version and the threads the kernels will use.",
        discussion: """
        Examples:
          moe info
          SPARSEMOE_NUM_THREADS=1 moe info
        """)

    @Option(help: "Threads for kernels and BLAS (default: SPARSEMOE_NUM_THREADS or all cores).")
    var threads: Int?

    func run() throws {
        try applyThreads(threads)
        print("SparseMoE \(SparseMoE.version)")
        print("threads: \(Threads.count) of \(Threads.available) available")
    }
}

/// Applies --threads, else SPARSEMOE_NUM_THREADS, else leaves the default (`ThreadSetting`:
/// anything but a whole number ≥ 1 is an error; more threads than cores, a warning).
func applyThreads(_ flag: Int?) throws {
    let setting = try ThreadSetting(flag: flag, environment: ProcessInfo.processInfo.environment,
                                    available: Threads.available)
    if let warning = setting.warning { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
    if let n = setting.count { Threads.count = n }
}

MoE.main()
