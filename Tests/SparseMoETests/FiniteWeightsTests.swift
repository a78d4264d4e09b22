import Foundation
import XCTest
@testable import SparseMoECore
import SparseMoE

/// A NaN or infinity in a saved weight is refused on load, naming the tensor and the file,
/// for library model folders and Hugging Face folders alike.
final class FiniteWeightsTests: XCTestCase {
    private func poisonedModel(_ value: Float) throws -> (TransformerLM, String) {
        var config = try TransformerConfig.preset(named: "tiny-moe")
        config.moe!.firstDense = 0  // every layer routed, as the test needs
        config.numLayers = 1
        let model = try TransformerLM(config: config)
        let (name, tensor) = model.namedParameters()[3]
        tensor.withUnsafeMutableFloats { $0[5] = value }
        return (model, name)
    }

    private func folder() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("finite-\(UUID().uuidString)")
    }

    func testLibraryFolderWithNaNWeightIsRefused() throws {
        let (model, name) = try poisonedModel(.nan)
        let dir = folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        try ModelFiles.save(model, to: dir)
        XCTAssertThrowsError(try ModelFiles.load(from: dir)) { error in
            let m = "\(error)"
            XCTAssertTrue(m.contains("'\(name)'") && m.contains("non-finite") && m.contains("element 5"), m)
            XCTAssertTrue(m.contains(dir.path), m)
        }
    }

    func testHuggingFaceFolderWithInfiniteWeightIsRefused() throws {
        let (model, _) = try poisonedModel(.infinity)
        let dir = folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        try HuggingFaceModel.save(model, to: dir)
        XCTAssertThrowsError(try HuggingFaceModel.load(directory: dir)) { error in
            let m = "\(error)"
            XCTAssertTrue(m.contains("non-finite") && m.contains("inf"), m)
        }
    }

    func testFiniteModelStillLoads() throws {
        let (model, name) = try poisonedModel(0.25)
        let dir = folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        try ModelFiles.save(model, to: dir)
        let loaded = try ModelFiles.load(from: dir)
        let value = loaded.namedParameters().first { $0.name == name }!.tensor.scalars[5]
        XCTAssertEqual(value, 0.25)
    }
}
