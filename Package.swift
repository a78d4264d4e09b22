// swift-tools-version:6.2
import PackageDescription

// Compiler and linker flags for the C kernels live here and nowhere else.
// `-fopenmp` is an unsafe flag. Since tools version 6.2 SwiftPM accepts it in
// dependencies consumed by version too, so a user's package can depend on
// SparseMoE with `from:` (checked by Tests/Consumer). See docs/architecture.md.
let kernelCFlags: [String] = ["-fopenmp", "-O3", "-std=c11"]
let kernelLinks: [LinkerSetting] = [
    .linkedLibrary("openblas"),
    .linkedLibrary("omp5"),
    .linkedLibrary("m"),
]

// Layers (data flows down only; the compiler holds it):
//   moe (CLI) → SparseMoERuns → SparseMoEBench → SparseMoE (re-exports ↓)
//   moe (CLI) → SparseMoEMPI → CMoEMPI → COpenMPI (system library: Open MPI via pkg-config)
//   SparseMoETraining → SparseMoEAnalysis → SparseMoEModels → SparseMoENN → SparseMoECore → CMoEKernels
//   SparseMoETraining, SparseMoEAnalysis, SparseMoENN → SparseMoEDistributed (collectives; depends on nothing)
//   SparseMoEServing → SparseMoEModels
//   moe → SparseMoEServer (HTTP, Hummingbird) → SparseMoE; no library layer depends on it
let package = Package(
    name: "SparseMoE",
    products: [
        .library(name: "SparseMoE", targets: ["SparseMoE"]),
        .library(name: "SparseMoEBench", targets: ["SparseMoEBench"]),
        .executable(name: "moe", targets: ["moe"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        // The HTTP server (SparseMoEServer) only.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // C kernels: every hot loop. Imported by SparseMoECore alone.
        .target(
            name: "CMoEKernels",
            cSettings: [.unsafeFlags(kernelCFlags)],
            linkerSettings: kernelLinks
        ),
        // Tensors, autograd and the ops (the only Swift code that calls the kernels).
        .target(name: "SparseMoECore", dependencies: ["CMoEKernels"]),
        // Layers (Linear, norms, attention, FFN) and the MoE layer (routers, experts, losses).
        .target(name: "SparseMoENN", dependencies: ["SparseMoECore", "SparseMoEDistributed"]),
        // TransformerLM, its configs and presets, Hugging Face families, safetensors IO.
        .target(name: "SparseMoEModels", dependencies: ["SparseMoECore", "SparseMoENN"]),
        // Parameter and FLOP accounting of configs and checkpoints, FLOPs of executed forwards.
        .target(name: "SparseMoEAnalysis", dependencies: ["SparseMoECore", "SparseMoENN", "SparseMoEModels", "SparseMoEDistributed"]),
        // The Communicator protocol (all-reduce, broadcast, all-to-all, barrier with timeouts) and
        // its in-process implementation; the MPI one is a side target of the CLI.
        .target(name: "SparseMoEDistributed"),
        // Optimizer, schedules, trainer (data parallel over a Communicator), data, checkpoints.
        .target(name: "SparseMoETraining", dependencies: ["SparseMoECore", "SparseMoENN", "SparseMoEModels", "SparseMoEAnalysis", "SparseMoEDistributed"]),
        // Continuous batching: a scheduler that decodes many requests in one forward per step.
        .target(name: "SparseMoEServing", dependencies: ["SparseMoECore", "SparseMoENN", "SparseMoEModels"]),
        // What users import: re-exports the seven library layers above.
        .target(
            name: "SparseMoE",
            dependencies: ["SparseMoECore", "SparseMoENN", "SparseMoEModels", "SparseMoEAnalysis", "SparseMoEDistributed", "SparseMoETraining", "SparseMoEServing"]
        ),

        // Side rooms: nothing above depends on them.
        // SVG charts.
        .target(name: "SparseMoEReporting", dependencies: ["SparseMoECore"]),
        // Grouped-GEMM and dense-GEMM references the benchmarks are measured against.
        .target(
            name: "CMoEBenchReference",
            dependencies: ["CMoEKernels"],
            cSettings: [.unsafeFlags(kernelCFlags)],
            linkerSettings: kernelLinks
        ),
        // Expert benchmarks, sweeps, the machine's sgemm peak, benchmark charts.
        .target(name: "SparseMoEBench", dependencies: ["SparseMoE", "SparseMoEReporting", "CMoEBenchReference"]),
        // Open MPI's flags from pkg-config (ompi-c); absent, CMoEMPI builds as "no MPI".
        .systemLibrary(name: "COpenMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        // The C calls into MPI (non-blocking collectives polled against a timeout).
        .target(name: "CMoEMPI", dependencies: ["COpenMPI"]),
        // Communicator over MPI, for `moe train --parallel data` under mpirun; kept out of the
        // SparseMoE product so that a package depending on SparseMoE never needs MPI.
        .target(name: "SparseMoEMPI", dependencies: ["SparseMoEDistributed", "CMoEMPI"]),
        // What the CLI's commands run: a whole training run with its report, training throughput.
        .target(name: "SparseMoERuns", dependencies: ["SparseMoE", "SparseMoEBench", "SparseMoEReporting"]),
        // An OpenAI-compatible HTTP server over a completion backend (the continuous-batching
        // engine), text codecs of model folders, Prometheus metrics.
        .target(
            name: "SparseMoEServer",
            dependencies: [
                "SparseMoE", "SparseMoEModels",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The command-line tool.
        .executableTarget(
            name: "moe",
            dependencies: [
                "SparseMoE", "SparseMoEBench", "SparseMoERuns", "SparseMoEReporting", "SparseMoEServer", "SparseMoEMPI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),

        // Naive twins of the optimised kernels, for the tests only.
        .target(name: "CMoEKernelsNaive", dependencies: ["CMoEKernels"], path: "Tests/CMoEKernelsNaive"),
        .testTarget(
            name: "SparseMoETests",
            dependencies: [
                "SparseMoE", "SparseMoEBench", "SparseMoERuns", "SparseMoEReporting", "SparseMoEServer",
                "CMoEKernels", "CMoEKernelsNaive", "CMoEBenchReference",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
    ]
)
