// swift-tools-version:6.2
// A user's package that depends on SparseMoE by version, the normal way. Built by
// Tests/Consumer/run.sh against a tagged copy of this repository.
import PackageDescription

let package = Package(
    name: "Consumer",
    dependencies: [
        .package(url: "SPARSEMOE_URL", from: "0.1.0"),
    ],
    targets: [
        .executableTarget(
            name: "Consumer",
            dependencies: [.product(name: "SparseMoE", package: "SparseMoE")]
        ),
    ]
)
