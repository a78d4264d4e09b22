// A consumer's program: builds a small MoE layer through `import SparseMoE` and runs it.
import SparseMoE

var rng = RandomGenerator(seed: 7)
let router = try TopKRouter(hiddenSize: 16, numExperts: 4, topK: 2, rng: &rng)
let experts = try Experts(kind: .swiglu, numExperts: 4, hiddenSize: 16, intermediateSize: 32, rng: &rng)
let moe = try MoELayer(router: router, experts: experts, losses: MoELossConfig(balanceCoefficient: 0.01), rng: &rng)
let x = Tensor.normal([8, 16], using: &rng)
var context = RoutingContext(training: false, rng: rng)
let result = try moe(x, context: &context)
precondition(result.output.shape == [8, 16], "unexpected output shape \(result.output.shape)")
let stats = RoutingStatistics(routing: result.routing, router: router)
print("consumer: MoE layer output \(result.output.shape), tokens per expert \(stats.tokensPerExpert)")
