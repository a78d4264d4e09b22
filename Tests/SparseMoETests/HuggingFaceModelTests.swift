import XCTest
@testable import SparseMoE

/// Loads a model folder and compares its logits for tokens.json with expected.json.
func hfLogitsMaxDiff(_ dir: URL) throws -> (maxDiff: Float, model: HuggingFaceModel) {
    let loaded = try HuggingFaceModel.load(directory: dir)
    struct Tokens: Decodable { let tokens: [Int32] }
    struct Expected: Decodable { let logits: [[Float]] }
    let tokens = try JSONDecoder().decode(Tokens.self, from: Data(contentsOf: dir.appendingPathComponent("tokens.json"))).tokens
    let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: dir.appendingPathComponent("expected.json"))).logits
    let out = try loaded.model.forward(try Tensor(indices: tokens, shape: [1, tokens.count]))
    let v = loaded.model.config.vocabSize
    XCTAssertEqual(out.logits.shape, [1, tokens.count, v])
    XCTAssertEqual(expected.count, tokens.count)
    let got = out.logits.scalars
    var worst: Float = 0
    for (t, row) in expected.enumerated() {
        XCTAssertEqual(row.count, v)
        for (j, x) in row.enumerated() { worst = max(worst, abs(got[t * v + j] - x)) }
    }
    return (worst, loaded)
}

final class HuggingFaceSharedFixtureTests: XCTestCase {
    func check(_ arch: String) throws {
        let dir = try sharedHFTinyFixtures().appendingPathComponent(arch)
        let (d, _) = try hfLogitsMaxDiff(dir)
        print("hf-tiny \(arch): max |diff| = \(d)")
        XCTAssertLessThanOrEqual(d, 1e-4, arch)
    }
    func testMixtral() throws { try check("mixtral") }
    func testQwen2MoE() throws { try check("qwen2_moe") }
    func testQwen3MoE() throws { try check("qwen3_moe") }
    func testOLMoE() throws { try check("olmoe") }
    func testDeepSeekV3() throws { try check("deepseek_v3") }
}
