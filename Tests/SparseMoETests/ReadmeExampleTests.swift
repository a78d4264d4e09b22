import XCTest
@testable import SparseMoECore
@testable import SparseMoENN

/// The README's Swift example, verbatim, so the first screen never shows code that does not compile.
final class ReadmeExampleTests: XCTestCase {
    func testReadmeExampleRuns() throws {
        var rng = RandomGenerator(seed: 42)
        let router = try TopKRouter(width: 128, experts: 8, k: 2, rng: &rng)        // Mixtral-style softmax top-2
        let experts = try Experts(kind: .swiglu, count: 8, width: 128, hidden: 256, rng: &rng)
        let moe = try MoELayer(router: router, experts: experts,
                               losses: try MoELossConfig(balanceCoefficient: 0.01, zLossCoefficient: 0.001), rng: &rng)

        let x = Tensor.normal([64, 128], using: &rng)                               // 64 tokens
        var context = RoutingContext(training: true, rng: rng)
        let result = try moe(x, context: &context)
        let loss = try add(try result.output.mean(), result.auxLoss!)
        try loss.backward()                                                          // gradients in moe.parameters
        let stats = RoutingStatistics(routing: result.routing, router: router)         // expert load, from the decision
        print(stats.tokensPerExpert, stats.coefficientOfVariation)

        XCTAssertEqual(stats.tokensPerExpert.reduce(0, +), 64 * 2)
        XCTAssertNotNil(experts.w1.grad)
        XCTAssertNotNil(router.weight.grad)
    }
}
