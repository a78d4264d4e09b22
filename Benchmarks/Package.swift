// swift-tools-version:6.1
// Benchmark suites for SparseMoE's kernels (package-benchmark convention).
// A separate package so that `swift build` / `swift test` of the library never build it and
// users of the library never depend on package-benchmark.
//
//   cd Benchmarks && swift package --allow-writing-to-package-directory benchmark
//
// (first build ≈ 3+ minutes in release). Filter: `benchmark --filter "routedExperts.*"`.
import PackageDescription

let package = Package(
    name: "SparseMoEBenchmarks",
    dependencies: [
        .package(name: "SparseMoE", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "Kernels",
            dependencies: [
                .product(name: "SparseMoE", package: "SparseMoE"),
                .product(name: "SparseMoEBench", package: "SparseMoE"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/Kernels",
            swiftSettings: [.swiftLanguageMode(.v5)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
