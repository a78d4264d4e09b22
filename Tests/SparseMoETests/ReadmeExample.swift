import SparseMoE

// The README's Swift example ("Build an MoE layer in Swift"). The lines between the two
// markers are the README's first ```swift block, after its `import SparseMoE` line, indented
// by four spaces; ReadmeExampleTests fails when the two differ, so the README's text is
// what gets compiled and run here.

/// Runs the README example; returns what the test checks.
func readmeExample() throws -> (result: MoEOutput, router: TopKRouter, experts: Experts, loss: Tensor) {
    // README example begins
    var rng = RandomGenerator(seed: 42)
    let router = try TopKRouter(hiddenSize: 128, numExperts: 8, topK: 2, rng: &rng)  // Mixtral-style softmax top-2
    let experts = try Experts(kind: .swiglu, numExperts: 8, hiddenSize: 128, intermediateSize: 256, rng: &rng)
    let moe = try MoELayer(router: router, experts: experts,
                           losses: MoELossConfig(balanceCoefficient: 0.01, zLossCoefficient: 0.001), rng: &rng)

    let x = Tensor.normal([64, 128], using: &rng)                                    // 64 tokens
    var context = RoutingContext(training: true, rng: rng)
    let result = try moe(x, context: &context)
    let loss = result.output.mean() + result.auxLoss!
    loss.backward()                                                                  // gradients in moe.parameters
    let stats = RoutingStatistics(routing: result.routing, router: router)           // expert load, from the decision
    print(stats.tokensPerExpert, stats.coefficientOfVariation)
    // README example ends
    return (result, router, experts, loss)
}
