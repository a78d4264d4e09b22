import XCTest
@testable import SparseMoECore
@testable import SparseMoENN
@testable import SparseMoEModels
@testable import SparseMoEAnalysis
@testable import SparseMoETraining

/// Executed FLOPs are counted outside the forward, from what the layers returned; here
/// against hand counts 2·m·n·k per matrix product.
final class ExecutedFLOPsTests: XCTestCase {
    /// Routed experts: 2·A·C·F per weight matrix, A from the op's dispatch (dropped slots excluded).
    func testRoutedExpertsCountAssignmentsThatRan() throws {
        var rng = RandomGenerator(seed: 1)
        let swiglu = try Experts(kind: .swiglu, numExperts: 3, hiddenSize: 4, intermediateSize: 6, rng: &rng)
        // pairs: t0:(0,-) t1:(1,2) t2:(2,0) t3:(0,1) t4:(1,2) → A = 9
        let idx: [Int32] = [0, -1, 1, 2, 2, 0, 0, 1, 1, 2]
        let routing = Routing(experts: Tensor(indices: idx, shape: [5, 2]), gates: randomTensor([5, 2], seed: 2))
        let (_, stats) = try swiglu(randomTensor([5, 4], seed: 3), routing: routing)
        XCTAssertEqual(stats.assignments, 9)
        XCTAssertEqual(ExecutedFLOPs.routedExperts(swiglu, assignments: stats.assignments), 2 * 9 * 4 * 6 * 3)
        let relu = try Experts(kind: .relu, numExperts: 3, hiddenSize: 4, intermediateSize: 6, rng: &rng)
        let all = Routing(experts: Tensor(indices: (0..<10).map { Int32($0 % 3) }, shape: [5, 2]),
                          gates: randomTensor([5, 2], seed: 4))
        let (_, reluStats) = try relu(randomTensor([5, 4], seed: 5), routing: all)
        XCTAssertEqual(ExecutedFLOPs.routedExperts(relu, assignments: reluStats.assignments), 2 * 10 * 4 * 6 * 2)
        // Every slot dropped: nothing executed.
        let none = Routing(experts: Tensor(indices: [Int32](repeating: -1, count: 10), shape: [5, 2]),
                           gates: randomTensor([5, 2], seed: 6))
        let (_, noneStats) = try relu(randomTensor([5, 4], seed: 7), routing: none)
        XCTAssertEqual(ExecutedFLOPs.routedExperts(relu, assignments: noneStats.assignments), 0)
    }

    /// One layer: router logits 2·T·C·E, experts on the surviving assignments, shared expert
    /// 2·T·C·F·3, shared gate 2·T·C. A hash router computes no logits.
    func testMoELayerCountsRouterExpertsAndSharedParts() throws {
        let (t, c, e, f, fs) = (16, 6, 4, 5, 7)
        var rng = RandomGenerator(seed: 2)
        let router = try TopKRouter.switchTop1(hiddenSize: c, numExperts: e, capacityFactor: 0.5, rng: &rng)
        let layer = try MoELayer(router: router, experts: try Experts(kind: .swiglu, numExperts: e, hiddenSize: c, intermediateSize: f, rng: &rng),
                                 shared: try FeedForward(kind: .swiglu, hiddenSize: c, intermediateSize: fs, rng: &rng), sharedGating: .sigmoid,
                                 losses: try MoELossConfig(), rng: &rng)
        var ctx = RoutingContext()
        let out = try layer(randomTensor([t, c], seed: 4), context: &ctx)
        let a = out.routing.experts.indexScalars.filter { $0 >= 0 }.count
        XCTAssertLessThan(a, t, "the capacity dropped some tokens")
        XCTAssertEqual(ExecutedFLOPs.moeLayer(layer, out),
                       2 * t * c * e + 2 * a * c * f * 3 + 2 * t * c * fs * 3 + 2 * t * c)

        let hash = try MoELayer(router: try HashRouter(numExperts: e), experts: try Experts(kind: .gelu, numExperts: e, hiddenSize: c, intermediateSize: f, rng: &rng),
                                losses: try MoELossConfig(), rng: &rng)
        var ids = RoutingContext(tokenIds: Tensor(indices: (0..<Int32(t)).map { $0 }, shape: [t]))
        let hashOut = try hash(randomTensor([t, c], seed: 5), context: &ids)
        XCTAssertEqual(ExecutedFLOPs.moeLayer(hash, hashOut), 2 * t * c * f * 2)
    }

    /// A model forward: the sum over its MoE layers; dropless top-K gives T·K assignments per
    /// layer. The trainer reports the same count per step.
    func testModelForwardAndTrainerStepCountEveryMoELayer() throws {
        var m = MoEConfig(numExperts: 4, topK: 2, expertIntermediateSize: 32)
        m.firstDense = 1
        let config = TransformerConfig(vocabSize: ByteTokenizer.vocabularySize, hiddenSize: 32, numLayers: 3, numHeads: 4,
                                       maxSequenceLength: 32, intermediateSize: 64, moe: m)
        let model = try TransformerLM(config: config, seed: 1)
        let tokens = Tensor(indices: (0..<Int32(32)).map { $0 % 200 }, shape: [2, 16])
        let out = try withNoGrad { try model.forward(tokens) }
        XCTAssertEqual(out.moe.map { $0 != nil }, [false, true, true])
        let t = 32, perLayer = 2 * t * 32 * 4 + 2 * (t * 2) * 32 * 32 * 3
        XCTAssertEqual(ExecutedFLOPs.moeLayers(model, out), 2 * perLayer)
        // Statistics from the same decisions: T·K assignments per MoE layer, nil for the dense one.
        let stats = model.routingStatistics(out)
        XCTAssertNil(stats[0])
        XCTAssertEqual(stats[1]?.tokensPerExpert.reduce(0, +), t * 2)

        var training = TrainingConfig()
        training.steps = 1; training.batchSize = 2; training.sequenceLength = 16; training.gradAccumulation = 2
        let text = ByteTokenizer().encode(String(repeating: "the quick brown fox ", count: 20))
        let trainer = try Trainer(model: model, dataset: try TextDataset(tokens: text, sequenceLength: 16), config: training)
        let report = try trainer.trainStep()
        XCTAssertEqual(report.moeExecutedFLOPs, 2 * 2 * perLayer, "two micro-batches of 2 × 16 tokens")
        XCTAssertEqual(report.routing.compactMap { $0 }.map { $0.tokensPerExpert.reduce(0, +) }, [t * 2, t * 2])
    }
}
