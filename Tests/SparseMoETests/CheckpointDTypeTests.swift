import XCTest
@testable import SparseMoECore
@testable import SparseMoEModels
@testable import SparseMoETraining

/// An integer tensor where the library expects floats (a model weight, an AdamW moment)
/// is an error naming the file and the tensor, never a trap.
extension TrainerTests {
    func testIntegerTensorsInAModelOrOptimizerFileNameTheFileAndTheTensor() throws {
        let dataset = try syntheticDataset()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sparsemoe-dtype-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let trainer = try Trainer(model: try TransformerLM(config: tinyModelConfig(), seed: 7), dataset: dataset, config: trainingConfig(steps: 3))
        _ = try trainer.trainStep()
        let folder = try TrainingCheckpoint.save(trainer, to: dir)

        // Model weights: one matrix stored as I32 with the right shape.
        let modelURL = folder.appendingPathComponent(SafetensorsCheckpoint.singleFileName)
        var tensors = try SafetensorsFile(url: modelURL).allTensors()
        let weight = "model.layers.0.self_attn.q_proj.weight"
        let shape = tensors[weight]!.shape
        tensors[weight] = Tensor(indices: [Int32](repeating: 1, count: shape.reduce(1, *)), shape: shape)
        try SafetensorsWriter.write(tensors, metadata: ["format": "pt"], to: modelURL)
        for load in [{ try ModelFiles.load(from: folder) }, { try ModelLoader.load(directory: folder) }] {
            XCTAssertThrowsError(try load()) { error in
                guard case let SparseMoEError.file(path, message)? = error as? SparseMoEError else { return XCTFail("\(error)") }
                XCTAssertEqual(path, modelURL.path)
                XCTAssertTrue(message.contains(weight) && message.contains("I32") && message.contains("floating"), message)
            }
        }

        // Optimiser state: an I32 first moment, then a float step count.
        let optimizerURL = folder.appendingPathComponent(TrainingCheckpoint.optimizerFileName)
        let original = try SafetensorsFile(url: optimizerURL).allTensors()
        let key = original.keys.sorted().first { $0.hasSuffix(".exp_avg") }!
        for (name, replacement) in [(key, Tensor(indices: [Int32](repeating: 0, count: original[key]!.count), shape: original[key]!.shape)),
                                    (key.replacingOccurrences(of: ".exp_avg", with: ".step"), Tensor([1], shape: [1]))] {
            var state = original
            state[name] = replacement
            try SafetensorsWriter.write(state, metadata: ["format": "sparsemoe-adamw"], to: optimizerURL)
            XCTAssertThrowsError(try TrainingCheckpoint.restore(trainer, from: folder)) { error in
                guard case let SparseMoEError.file(path, message)? = error as? SparseMoEError else { return XCTFail("\(error)") }
                XCTAssertEqual(path, optimizerURL.path)
                let parameter = String(name.dropFirst("state.".count).prefix { _ in true }.split(separator: ".").dropLast().joined(separator: "."))
                XCTAssertTrue(message.contains(parameter), "'\(parameter)' not in: \(message)")
            }
        }
    }
}
