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
        subcommands: [Train.self, Generate.self, Serve.self, Logits.self, Eval.self, Init.self, Quantize.self, Prune.self, Flops.self, Bench.self, Scaling.self, Info.self]
    )
}

/// Prints the library version, the thread configuration, and what a model folder holds.
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the version, the threads and SIMD path the kernels use, and a model folder's weights.",
        discussion: """
        With --model, reads only the folder's headers (fast at any size): the architecture \
        and, per storage dtype (f32, bf16, f16, int8, int4), the tensors, parameters and bytes.

        Examples:
          moe info
          SPARSEMOE_NUM_THREADS=1 moe info
          moe info --model models/olmoe-int4
        """)

    @Option(help: "Threads for kernels and BLAS (default: SPARSEMOE_NUM_THREADS or all cores).")
    var threads: Int?

    @Option(help: "A model folder to describe (config.json + safetensors).")
    var model: String?

    func run() throws {
        try applyThreads(threads)
        print("SparseMoE \(SparseMoE.version)")
        print("threads: \(Threads.count) of \(Threads.available) available")
        print("weight kernels: \(Threads.simdPath) SIMD path")
        let blas = Threads.blasCore
        print("OpenBLAS kernels: \(blas.name)" + (blas.chosenBySparseMoE ? " (OpenBLAS did not know this CPU and fell back to generic SSE3 kernels; chosen from its features, OPENBLAS_CORETYPE overrides)" : ""))
        print("float32 matmuls: " + MatmulPrecision.float32Kernel.summary)
        print("bf16 matmuls (mixed precision): " + MatmulPrecision.bf16Kernel.summary)
        guard let model else { return }
        let dir = URL(fileURLWithPath: model)
        let config: TransformerConfig
        if ModelFiles.isNative(dir) {
            config = try TransformerConfig.load(from: dir.appendingPathComponent(ModelFiles.configFileName))
            print("model: \(dir.path) (library model)")
        } else {
            let hf = try HuggingFaceFamilies.load(from: dir.appendingPathComponent(HuggingFaceModel.configFileName))
            config = try hf.transformerConfig()
            print("model: \(dir.path) (\(hf.modelType))")
        }
        let moe = config.moe.map { ", \($0.numExperts) experts of \($0.expertIntermediateSize), top-\($0.topK)" } ?? ", dense"
        print("  \(config.numLayers) layers, width \(config.hiddenSize), vocabulary \(config.vocabSize)\(moe)")
        let rows = try SafetensorsCheckpoint(directory: dir).storageSummary()
        print("  dtype   tensors      parameters           bytes")
        for r in rows {
            print("  " + pad(r.dtype, -6) + pad(grouped(r.tensors), 9) + pad(grouped(r.parameters), 16) + pad(grouped(r.bytes), 16))
        }
        let total = rows.reduce(0) { $0 + $1.bytes }, params = rows.reduce(0) { $0 + $1.parameters }
        print("  " + pad("total", -6) + pad(grouped(rows.reduce(0) { $0 + $1.tensors }), 9) + pad(grouped(params), 16) + pad(grouped(total), 16)
              + String(format: "  (%.2f bits per parameter)", 8 * Double(total) / Double(max(params, 1))))
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
