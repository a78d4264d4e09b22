// Kernel suites of SparseMoE in the package-benchmark convention.
//
//   cd Benchmarks && swift package --allow-writing-to-package-directory benchmark
//
// Suites (fp32, 2048 tokens unless named; the workloads of `moe bench`):
//   router/*           softmax top-k on the router logits [T, E] (and the full TopKRouter.route)
//   permute/*          DispatchPlan: counting sort of the (token, slot) pairs by expert
//   gather+combine/*   routedExperts with F = 1: the GEMMs vanish, what remains is the gather of
//                      rows into expert order and the weighted combine back (no separate op exists:
//                      the combine is fused into routedExperts)
//   grouped-gemm/*     the balanced grouped-sgemm roofline alone (GroupedGEMMReference)
//   routedExperts/*    the routed-experts op, forward
//   backward/*         the routed-experts op, forward + backward (weights, dx, dgates)
// `moe bench` reports the same things as ratios against the roofline; these suites give
// distributions (p0…p100), allocation counts and regression baselines.
import Benchmark
import SparseMoE
import SparseMoEBench

/// Tensors of one workload, built once per process (outside the timed region).
final class Fixture {
    let workload: ExpertWorkload
    let x: Tensor, dy: Tensor, logits: Tensor
    let experts: Tensor, gates: Tensor
    let bank: Experts
    let router: TopKRouter
    /// The balanced grouped-sgemm roofline, built on first use.
    lazy var roofline = try! GroupedGEMMReference(numExperts: workload.numExperts, rowsPerExpert: workload.balancedRowsPerExpert,
                                                  hiddenSize: workload.hiddenSize, intermediateSize: workload.intermediateSize)

    init(_ w: ExpertWorkload) {
        workload = w
        var rng = RandomGenerator(seed: 1)
        let x = Tensor.normal([w.tokens, w.hiddenSize], using: &rng, requiresGrad: true)
        self.x = x
        dy = Tensor.normal([w.tokens, w.hiddenSize], std: 0.01, using: &rng)
        logits = Tensor.normal([w.tokens, w.numExperts], using: &rng)
        bank = try! Experts(kind: .swiglu, numExperts: w.numExperts, hiddenSize: w.hiddenSize, intermediateSize: w.intermediateSize, rng: &rng)
        let router = try! TopKRouter(hiddenSize: w.hiddenSize, numExperts: w.numExperts, topK: w.topK, rng: &rng)
        self.router = router
        var context = RoutingContext()
        let r = try! withNoGrad { try router.route(x, context: &context) }
        experts = r.experts
        gates = try! Tensor(r.gates.scalars, shape: r.gates.shape, requiresGrad: true)
    }

    func forward() throws -> Tensor {
        try routedExperts(x, experts: experts, gates: gates, w1: bank.w1, w3: bank.w3, w2: bank.w2, activation: .swiglu).output
    }
}

let workloads = ExpertWorkload.all.filter { $0.capacityFactor == nil }

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .throughput],
        warmupIterations: 1,
        maxDuration: .seconds(2),
        maxIterations: 50
    )
    let fixtures = workloads.map(Fixture.init)

    for f in fixtures {
        let name = f.workload.name

        Benchmark("router/softmaxTopK \(name)") { benchmark in
            for _ in benchmark.scaledIterations {
                blackHole(try softmaxTopK(f.logits, topK: f.workload.topK, renormalize: true))
            }
        }
        Benchmark("router/TopKRouter.route \(name)") { benchmark in
            var context = RoutingContext()
            for _ in benchmark.scaledIterations {
                blackHole(try withNoGrad { try f.router.route(f.x, context: &context) })
            }
        }
        Benchmark("permute/DispatchPlan \(name)") { benchmark in
            for _ in benchmark.scaledIterations {
                blackHole(try DispatchPlan(expertIndices: f.experts, numExperts: f.workload.numExperts))
            }
        }
        Benchmark("grouped-gemm/roofline forward \(name)") { benchmark in
            for _ in benchmark.scaledIterations { f.roofline.run(backward: false, schedule: .auto) }
        }
        Benchmark("routedExperts/forward \(name)") { benchmark in
            for _ in benchmark.scaledIterations { blackHole(try withNoGrad { try f.forward() }) }
        }
        Benchmark("backward/forward+backward \(name)") { benchmark in
            // Gradients accumulate across iterations into kept buffers (same cost as zeroed ones).
            for _ in benchmark.scaledIterations { try f.forward().backward(gradient: f.dy) }
        }
    }

    let thin = Fixture(try! ExpertWorkload(name: "F=1", tokens: 2048, hiddenSize: 512, intermediateSize: 1, numExperts: 8, topK: 2))
    Benchmark("gather+combine/routedExperts F=1 T=2048 C=512 E=8 K=2") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try withNoGrad { try thin.forward() }) }
    }
}
