// swift-tools-version:6.0
import PackageDescription

// Compiler and linker flags for the C kernels live here and nowhere else.
// `-fopenmp` is an unsafe flag: SwiftPM accepts it for root packages and for
// dependencies pinned by branch or path, but not for dependencies consumed by
// version. See docs/architecture.md ("Build flags").
let kernelCFlags: [String] = ["-fopenmp", "-O3", "-march=native", "-std=c11"]

let package = Package(
    name: "SparseMoE",
    products: [
        .library(name: "SparseMoE", targets: ["SparseMoE"]),
        .executable(name: "moe", targets: ["moe"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .target(
            name: "CMoEKernels",
            cSettings: [.unsafeFlags(kernelCFlags)],
            linkerSettings: [
                .linkedLibrary("openblas"),
                .linkedLibrary("omp5"),
                .linkedLibrary("m"),
            ]
        ),
        .target(
            name: "SparseMoE",
            dependencies: ["CMoEKernels"]
        ),
        .executableTarget(
            name: "moe",
            dependencies: [
                "SparseMoE",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "SparseMoETests",
            dependencies: ["SparseMoE", "CMoEKernels"]
        ),
    ]
)
