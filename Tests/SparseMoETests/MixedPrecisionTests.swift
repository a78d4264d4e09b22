import XCTest
import CMoEKernels
import CMoEKernelsNaive
@testable import SparseMoECore
@testable import SparseMoENN
@testable import SparseMoEModels
@testable import SparseMoETraining

/// Mixed precision (`MatmulPrecision.bfloat16`): matmuls forward and backward against the bf16
/// naive twin, routers unchanged by it, and training that still learns.
final class MixedPrecisionTests: XCTestCase {
    /// out = a·bᵀ and its gradients under bf16 against moe_sgemm_bf16_naive on the same operands
    /// (backward: dA = dC·B, dB = dCᵀ·A, with dC = 1 from sum()).
    func testMatmulForwardAndBackwardInBF16() {
        let (m, n, k) = (9, 33, 70)
        let a = randomTensor([m, k], seed: 1), b = randomTensor([n, k], seed: 2)
        a.requiresGrad = true
        b.requiresGrad = true
        let out = MatmulPrecision.with(.bfloat16) { matmul(a, b, transposeB: true) }
        XCTAssertEqual(MatmulPrecision.current, .float32, "with(_:_:) restores the ambient precision")
        var ref = [Float](repeating: 0, count: m * n), absRef = ref
        moe_sgemm_bf16_naive(0, 1, Int64(m), Int64(n), Int64(k), 1, a.scalars, Int64(k), b.scalars, Int64(k), 0, &ref, Int64(n), &absRef)
        for i in 0..<(m * n) {
            XCTAssertEqual(out.scalars[i], ref[i], accuracy: Float(k + 2) * 6e-8 * absRef[i], "forward \(i)")
        }
        sum(out).backward()  // runs in float32 ambient: the matmul's own precision (bf16) applies
        let ones = [Float](repeating: 1, count: m * n)
        var da = [Float](repeating: 0, count: m * k), daAbs = da, db = [Float](repeating: 0, count: n * k), dbAbs = db
        moe_sgemm_bf16_naive(0, 0, Int64(m), Int64(k), Int64(n), 1, ones, Int64(n), b.scalars, Int64(k), 0, &da, Int64(k), &daAbs)
        moe_sgemm_bf16_naive(1, 0, Int64(n), Int64(k), Int64(m), 1, ones, Int64(n), a.scalars, Int64(k), 0, &db, Int64(k), &dbAbs)
        for i in 0..<(m * k) { XCTAssertEqual(a.grad!.scalars[i], da[i], accuracy: Float(n + 2) * 6e-8 * daAbs[i], "dA \(i)") }
        for i in 0..<(n * k) { XCTAssertEqual(b.grad!.scalars[i], db[i], accuracy: Float(m + 2) * 6e-8 * dbAbs[i], "dB \(i)") }
        // and bf16 really differs from float32 here (the check above could not pass by accident)
        let fp32 = matmul(a, b, transposeB: true)
        XCTAssertNotEqual(fp32.scalars, out.scalars)
    }

    /// Every router computes its logits in float32 whatever the ambient precision: the same
    /// logits, experts and gates bit for bit under bf16 as under float32.
    func testRoutersIgnoreTheAmbientPrecision() throws {
        let (t, c, e) = (23, 40, 8)
        var rng = RandomGenerator(seed: 5)
        let routers: [(String, any Router)] = [
            ("topk", try TopKRouter(hiddenSize: c, numExperts: e, topK: 2, rng: &rng)),
            ("noisy", try NoisyTopKRouter(hiddenSize: c, numExperts: e, topK: 2, rng: &rng)),
            ("expert-choice", try ExpertChoiceRouter(hiddenSize: c, numExperts: e, capacityFactor: 1.5, rng: &rng)),
            ("sigmoid-groups", try SigmoidBiasRouter(hiddenSize: c, numExperts: e, topK: 2, nGroup: 2, topkGroup: 1, routedScalingFactor: 2, rng: &rng)),
        ]
        let x = randomTensor([t, c], seed: 9)
        for (name, router) in routers {
            func route(_ p: MatmulPrecision) throws -> Routing {
                var ctx = RoutingContext(training: true, rng: RandomGenerator(seed: 3))
                return try MatmulPrecision.with(p) { try withNoGrad { try router.route(x, context: &ctx) } }
            }
            let (f, h) = (try route(.float32), try route(.bfloat16))
            XCTAssertEqual(f.experts.indexScalars, h.experts.indexScalars, name)
            XCTAssertEqual(f.gates.scalars, h.gates.scalars, name)
            XCTAssertEqual(f.logits?.scalars, h.logits?.scalars, name)
        }
    }

    /// A tiny MoE overfits one batch in bf16 as in float32, and its first loss is float32's within
    /// bf16 rounding.
    func testTrainingInBF16Learns() throws {
        var m = MoEConfig(numExperts: 4, topK: 2, expertIntermediateSize: 32)
        m.router = .softmaxTopK
        let config = TransformerConfig(vocabSize: ByteTokenizer.vocabularySize, hiddenSize: 32, numLayers: 2, numHeads: 4,
                                       maxSequenceLength: 32, intermediateSize: 64, moe: m)
        var losses: [MatmulPrecision: [Double]] = [:]
        for precision in MatmulPrecision.allCases {
            let dataset = try TextDataset(tokens: ByteTokenizer().encode("the quick brown f"), sequenceLength: 16, validationFraction: 0)
            var t = TrainingConfig()
            t.steps = 150; t.batchSize = 4; t.sequenceLength = 16; t.learningRate = 1e-2; t.warmupSteps = 5
            t.weightDecay = 0; t.evalBatches = 2; t.precision = precision
            let trainer = try Trainer(model: try TransformerLM(config: config, seed: 1), dataset: dataset, config: t)
            losses[precision] = try (0..<t.steps).map { _ in try trainer.trainStep().loss }
            XCTAssertEqual(MatmulPrecision.current, .float32, "the step restores the ambient precision")
        }
        let (f, h) = (losses[.float32]!, losses[.bfloat16]!)
        XCTAssertNotEqual(f[0], h[0], "bf16 must change the arithmetic")
        XCTAssertEqual(h[0], f[0], accuracy: 0.02 * f[0], "first loss")
        XCTAssertLessThan(h.last!, 0.1, "bf16: final loss \(h.last!) (float32: \(f.last!))")
    }

    /// `trainStep(precision:)` overrides the configured precision for that step only: steps in
    /// bf16 on a float32-configured trainer give the bf16-configured trainer's losses and weights
    /// bit for bit; the next step without it is float32 again.
    func testTrainStepPrecisionOverridesTheConfigForOneStep() throws {
        var m = MoEConfig(numExperts: 4, topK: 2, expertIntermediateSize: 32)
        m.router = .softmaxTopK
        let config = TransformerConfig(vocabSize: ByteTokenizer.vocabularySize, hiddenSize: 32, numLayers: 2, numHeads: 4,
                                       maxSequenceLength: 32, intermediateSize: 64, moe: m)
        func trainer(_ precision: MatmulPrecision) throws -> Trainer {
            let dataset = try TextDataset(tokens: ByteTokenizer().encode("the quick brown fox jumps"), sequenceLength: 16, validationFraction: 0)
            var t = TrainingConfig()
            t.steps = 3; t.batchSize = 2; t.sequenceLength = 16; t.learningRate = 1e-2; t.warmupSteps = 0
            t.precision = precision
            return try Trainer(model: try TransformerLM(config: config, seed: 1), dataset: dataset, config: t)
        }
        let (bf16, fp32, mixed) = (try trainer(.bfloat16), try trainer(.float32), try trainer(.float32))
        let bf16Losses = try (0..<2).map { _ in try bf16.trainStep().loss }
        let fp32Loss = try fp32.trainStep().loss
        let mixedLosses = try (0..<2).map { _ in try mixed.trainStep(precision: .bfloat16).loss }
        XCTAssertEqual(mixedLosses, bf16Losses)
        XCTAssertNotEqual(fp32Loss, bf16Losses[0], "bf16 must change the arithmetic")
        for (p, q) in zip(mixed.model.parameters, bf16.model.parameters) { XCTAssertEqual(p.scalars, q.scalars) }
        XCTAssertEqual(MatmulPrecision.current, .float32)
        // the next step without an override is the configured float32 again
        _ = try mixed.trainStep()
        _ = try bf16.trainStep()
        XCTAssertNotEqual(mixed.model.parameters.map { $0.scalars }, bf16.model.parameters.map { $0.scalars })
    }

    func testConfigDecodesPrecisionAndDefaultsToFloat32() throws {
        var t = TrainingConfig()
        t.precision = .bfloat16
        let data = try JSONEncoder().encode(t)
        XCTAssertTrue(String(decoding: data, as: UTF8.self).contains("\"precision\":\"bf16\""))
        XCTAssertEqual(try JSONDecoder().decode(TrainingConfig.self, from: data).precision, .bfloat16)
        var object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        object["precision"] = nil
        let old = try JSONSerialization.data(withJSONObject: object)
        XCTAssertEqual(try JSONDecoder().decode(TrainingConfig.self, from: old).precision, .float32)
    }
}
