import XCTest
@testable import SparseMoECore
@testable import SparseMoEModels

/// A safetensors image from a header string and a data section (length field optional).
func safetensorsImage(_ header: String, data: [UInt8], length: UInt64? = nil) -> Data {
    var out = Data()
    var n = (length ?? UInt64(header.utf8.count)).littleEndian
    withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
    out.append(contentsOf: Array(header.utf8))
    out.append(contentsOf: data)
    return out
}

func temporaryDirectory(_ name: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("sparsemoe-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

final class SafetensorsTests: XCTestCase {
    // MARK: half precision

    /// Every f16 bit pattern widened by hand equals Swift's own Float16 conversion.
    func testFloat16ToFloatExhaustive() {
        #if arch(x86_64) || arch(arm64)
        for bits in 0...UInt16.max {
            let mine = HalfPrecision.float(fromFloat16Bits: bits)
            let ref = Float(Float16(bitPattern: bits))
            if ref.isNaN { XCTAssertTrue(mine.isNaN, "f16 \(bits)"); continue }
            XCTAssertEqual(mine.bitPattern, ref.bitPattern, "f16 bits \(String(bits, radix: 16))")
        }
        #endif
    }

    /// f32 → f16 rounding equals Float16(Float) (IEEE round-to-nearest-even) on
    /// every f16 value, every midpoint and its neighbours, and random floats.
    func testFloatToFloat16Rounding() {
        var values: [Float] = [0, -0, .infinity, -.infinity, 65504, 65519.99, 65520, 1e-8, 2.98e-8, 2.99e-8, 5.96e-8, -6.1e-5,
                               .leastNonzeroMagnitude, .greatestFiniteMagnitude]
        for bits in stride(from: 0, through: 0x7BFF, by: 1) {
            let a = HalfPrecision.float(fromFloat16Bits: UInt16(bits)), b = HalfPrecision.float(fromFloat16Bits: UInt16(bits + 1))
            let mid = (a + b) / 2  // exact in f32
            values += [a, mid, mid.nextUp, mid.nextDown, -mid]
        }
        var rng = RandomGenerator(seed: 11)
        for _ in 0..<20000 { values.append(Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))) }
        for v in values {
            let mine = HalfPrecision.float16Bits(from: v)
            let ref = Float16(v).bitPattern
            if v.isNaN { XCTAssertEqual(mine & 0x7C00, 0x7C00); XCTAssertNotEqual(mine & 0x03FF, 0); continue }
            XCTAssertEqual(mine, ref, "f32 \(v) (\(String(v.bitPattern, radix: 16)))")
        }
    }

    /// bf16 widening against value arithmetic in Double (independent of bit tricks).
    func testBFloat16ToFloatExhaustive() {
        for bits in 0...UInt16.max {
            let sign: Double = bits & 0x8000 != 0 ? -1 : 1
            let e = Int((bits >> 7) & 0xFF), m = Double(bits & 0x7F)
            let mine = HalfPrecision.float(fromBFloat16Bits: bits)
            if e == 0xFF {
                if m == 0 { XCTAssertEqual(Double(mine), sign * .infinity) } else { XCTAssertTrue(mine.isNaN) }
                continue
            }
            let ref = e == 0 ? sign * m / 128 * pow(2, -126) : sign * (1 + m / 128) * pow(2, Double(e - 127))
            XCTAssertEqual(Double(mine), ref, "bf16 bits \(String(bits, radix: 16))")
            if ref == 0 { XCTAssertEqual(mine.sign == .minus, sign < 0) }
        }
    }

    /// f32 → bf16 picks the nearer of the two neighbouring bf16 values (ties to even mantissa).
    func testFloatToBFloat16Rounding() {
        var rng = RandomGenerator(seed: 12)
        var values: [Float] = [0, -0, .infinity, -.infinity, .greatestFiniteMagnitude, .leastNonzeroMagnitude, 1, 1.00390625, 1.01171875]
        for _ in 0..<50000 { values.append(Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))) }
        for v in values {
            let b = HalfPrecision.bfloat16Bits(from: v)
            if v.isNaN { XCTAssertTrue(HalfPrecision.float(fromBFloat16Bits: b).isNaN); continue }
            if v.isInfinite { XCTAssertEqual(HalfPrecision.float(fromBFloat16Bits: b), v); continue }
            let down = UInt16(v.bitPattern >> 16)  // truncation toward zero in magnitude
            let lo = Double(HalfPrecision.float(fromBFloat16Bits: down))
            let upBits = down &+ 1
            // Rounding up past the largest finite bf16 gives infinity.
            let hi = Double(HalfPrecision.float(fromBFloat16Bits: upBits))
            let dLo = abs(Double(v) - lo), dHi = abs(hi - Double(v))
            let expected: UInt16
            if hi.isInfinite {
                let ulp = abs(lo) - Double(HalfPrecision.float(fromBFloat16Bits: down &- 1)).magnitude
                expected = dLo < ulp / 2 || (dLo == ulp / 2 && down & 1 == 0) ? down : upBits
            } else {
                expected = dLo < dHi || (dLo == dHi && down & 1 == 0) ? down : upBits
            }
            XCTAssertEqual(b, expected, "f32 \(v)")
        }
    }

    // MARK: round trip

    func testRoundTripF32AndInt32() throws {
        let dir = try temporaryDirectory("rt")
        defer { try? FileManager.default.removeItem(at: dir) }
        var rng = RandomGenerator(seed: 3)
        let tensors: [String: Tensor] = [
            "b.weight": Tensor.normal([7, 13], using: &rng),
            "a.bias": Tensor.normal([5], using: &rng),
            "scalar": Tensor(scalar: 2.5),
            "empty": Tensor(zeros: [0, 4]),
            "ids": Tensor(indices: [1, -2, 3, Int32.max, Int32.min], shape: [5]),
            "name with \"quotes\" and \\": Tensor.normal([3, 1, 2], using: &rng),
        ]
        let url = dir.appendingPathComponent("t.safetensors")
        try SafetensorsWriter.write(tensors, metadata: ["format": "pt", "note": "ünïcode"], to: url)
        let bytes = try Data(contentsOf: url)
        let n = bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        XCTAssertEqual((8 + Int(n)) % 8, 0, "header padded to 8 bytes")
        XCTAssertEqual(bytes, try SafetensorsWriter.encode(tensors, metadata: ["format": "pt", "note": "ünïcode"]))
        let file = try SafetensorsFile(url: url)
        XCTAssertEqual(file.metadata, ["format": "pt", "note": "ünïcode"])
        XCTAssertEqual(Set(file.names), Set(tensors.keys))
        // Data laid out in name order.
        let byOffset = file.header.tensors.filter { !$0.dataOffsets.isEmpty }.map(\.name)
        XCTAssertEqual(byOffset, byOffset.sorted())
        for (name, t) in tensors {
            let back = try file.tensor(name)
            XCTAssertEqual(back.shape, t.shape, name)
            XCTAssertEqual(back.dtype, t.dtype, name)
            if t.dtype == .float32 {
                XCTAssertEqual(back.scalars.map(\.bitPattern), t.scalars.map(\.bitPattern), name)
            } else {
                XCTAssertEqual(back.indexScalars, t.indexScalars, name)
            }
        }
        XCTAssertEqual(file.totalElements, tensors.values.reduce(0) { $0 + $1.count })
    }

    func testRoundTripHalfFormats() throws {
        var rng = RandomGenerator(seed: 4)
        let t = Tensor.normal([17, 3], using: &rng)
        for (format, dtype) in [(SafetensorsWriter.FloatFormat.bf16, SafetensorsDType.bf16), (.f16, .f16)] {
            let file = try SafetensorsFile(bytes: try SafetensorsWriter.encode(["w": t], floatFormat: format))
            XCTAssertEqual(file.info("w")?.dtype, dtype)
            let back = try file.tensor("w")
            for (x, y) in zip(t.scalars, back.scalars) {
                let expected = dtype == .bf16 ? HalfPrecision.float(fromBFloat16Bits: HalfPrecision.bfloat16Bits(from: x))
                                              : HalfPrecision.float(fromFloat16Bits: HalfPrecision.float16Bits(from: x))
                XCTAssertEqual(y, expected)
                XCTAssertEqual(y, x, accuracy: abs(x) * (dtype == .bf16 ? 1.0 / 256 : 1.0 / 2048) + 1e-7)
            }
            // Writing the re-read tensor again as the same format is lossless.
            let again = try SafetensorsFile(bytes: try SafetensorsWriter.encode(["w": back], floatFormat: format)).tensor("w")
            XCTAssertEqual(again.scalars, back.scalars)
        }
    }

    func testReadsF16AndI64WrittenByHand() throws {
        // F16 [1.0, -2.0, 65504, smallest subnormal], I64 [7, -1], BF16 [1.5]
        let f16: [UInt8] = [0x00, 0x3C, 0x00, 0xC0, 0xFF, 0x7B, 0x01, 0x00]
        let i64: [UInt8] = [7, 0, 0, 0, 0, 0, 0, 0] + [UInt8](repeating: 0xFF, count: 8)
        let bf16: [UInt8] = [0xC0, 0x3F]
        let header = #"{"h":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]},"i":{"dtype":"I64","shape":[2],"data_offsets":[8,24]},"b":{"dtype":"BF16","shape":[],"data_offsets":[24,26]}}"#
        let file = try SafetensorsFile(bytes: safetensorsImage(header, data: f16 + i64 + bf16))
        XCTAssertEqual(try file.tensor("h").scalars, [1, -2, 65504, Float(sign: .plus, exponent: -24, significand: 1)])
        XCTAssertEqual(try file.tensor("i").indexScalars, [7, -1])
        XCTAssertEqual(try file.tensor("b").item, 1.5)
        XCTAssertEqual(try file.tensor("b").shape, [])
    }

    // MARK: malformed files

    private func assertFileError(_ data: Data, mentions needles: [String], file: StaticString = #filePath, line: UInt = #line) {
        let path = "/models/bad.safetensors"
        XCTAssertThrowsError(try SafetensorsFile(bytes: data, path: path), file: file, line: line) { error in
            guard case let SparseMoEError.file(p, message) = error else {
                return XCTFail("expected SparseMoEError.file, got \(error)", file: file, line: line)
            }
            XCTAssertEqual(p, path, file: file, line: line)
            for n in needles { XCTAssertTrue(message.contains(n), "'\(message)' should mention '\(n)'", file: file, line: line) }
        }
    }

    func testMalformedFilesNameFileAndTensor() {
        let ok = #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        let data8 = [UInt8](repeating: 0, count: 8)
        XCTAssertNoThrow(try SafetensorsFile(bytes: safetensorsImage(ok, data: data8)))

        assertFileError(Data([1, 2, 3]), mentions: ["truncated"])
        assertFileError(safetensorsImage(ok, data: data8).prefix(20), mentions: ["beyond the end"])
        assertFileError(safetensorsImage(ok, data: data8, length: 1 << 40), mentions: ["absurd"])
        assertFileError(safetensorsImage(ok, data: data8, length: UInt64.max), mentions: ["absurd"])
        assertFileError(safetensorsImage(ok, data: data8, length: 5000), mentions: ["beyond the end"])
        assertFileError(safetensorsImage(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#, data: data8), mentions: ["malformed"])
        assertFileError(safetensorsImage("[1,2]", data: data8), mentions: ["JSON object"])
        assertFileError(safetensorsImage(#"{"w":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}"#, data: data8), mentions: ["'w'", "unknown dtype 'F33'"])
        assertFileError(safetensorsImage(#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: data8), mentions: ["'w'", "needs 12 bytes", "hold 8"])
        assertFileError(safetensorsImage(#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: data8), mentions: ["'w'", "outside the data section"])
        assertFileError(safetensorsImage(#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#, data: data8), mentions: ["'w'", "begin after end"])
        assertFileError(safetensorsImage(#"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}}"#, data: data8), mentions: ["'w'", "negative dimension"])
        assertFileError(safetensorsImage(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[-4,4]}}"#, data: data8), mentions: ["'w'", "negative"])
        assertFileError(safetensorsImage(#"{"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#, data: data8), mentions: ["'w'"])
        assertFileError(safetensorsImage(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8.5]}}"#, data: data8), mentions: ["'w'"])
        assertFileError(safetensorsImage(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}}"#, data: data8), mentions: ["'w'", "[begin, end]"])
        assertFileError(safetensorsImage(#"{"w":{"dtype":"F32","shape":[2]}}"#, data: data8), mentions: ["'w'", "data_offsets"])
        assertFileError(safetensorsImage(#"{"w":[1,2]}"#, data: data8), mentions: ["'w'"])
        assertFileError(safetensorsImage(#"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#, data: data8), mentions: ["'w'", "too many"])
        assertFileError(safetensorsImage(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,99999999999999999999999]}}"#, data: data8), mentions: ["'w'"])
        assertFileError(safetensorsImage(#"{"__metadata__":{"a":1},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: data8), mentions: ["__metadata__"])
        assertFileError(safetensorsImage(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: data8),
                        mentions: ["'a'", "'b'", "overlapping"])
        var badUTF8 = safetensorsImage(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: data8)
        badUTF8[12] = 0xFF
        assertFileError(badUTF8, mentions: ["UTF-8"])
    }

    func testMissingTensorAndUnconvertibleDtypeNameTheTensor() throws {
        let file = try SafetensorsFile(bytes: safetensorsImage(#"{"m":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}"#, data: [1, 0]),
                                       path: "x.safetensors")
        XCTAssertThrowsError(try file.tensor("nope")) { XCTAssertTrue("\($0)".contains("'nope'") && "\($0)".contains("x.safetensors")) }
        XCTAssertThrowsError(try file.tensor("m")) { XCTAssertTrue("\($0)".contains("'m'") && "\($0)".contains("BOOL")) }
        XCTAssertEqual(try file.withRawBytes("m") { Array($0) }, [1, 0])
        let big = try SafetensorsFile(bytes: safetensorsImage(#"{"i":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#, data: [0, 0, 0, 0, 1, 0, 0, 0]))
        XCTAssertThrowsError(try big.tensor("i")) { XCTAssertTrue("\($0)".contains("'i'")) }
    }

    func testOpenFromDiskErrorsNameThePath() throws {
        let dir = try temporaryDirectory("disk")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("short.safetensors")
        try Data([1, 2]).write(to: url)
        XCTAssertThrowsError(try SafetensorsFile(url: url)) { XCTAssertTrue("\($0)".contains(url.path)) }
        XCTAssertThrowsError(try SafetensorsFile(url: dir.appendingPathComponent("absent.safetensors"))) {
            XCTAssertTrue("\($0)".contains("absent.safetensors"))
        }
    }

    // MARK: sharded checkpoints

    func testShardedCheckpoint() throws {
        let dir = try temporaryDirectory("shards")
        defer { try? FileManager.default.removeItem(at: dir) }
        var rng = RandomGenerator(seed: 5)
        let a = Tensor.normal([3, 4], using: &rng), b = Tensor.normal([5], using: &rng), c = Tensor.normal([2, 2], using: &rng)
        try SafetensorsWriter.write(["a": a, "b": b], to: dir.appendingPathComponent("model-00001-of-00002.safetensors"))
        try SafetensorsWriter.write(["c": c], to: dir.appendingPathComponent("model-00002-of-00002.safetensors"))
        let index = #"{"metadata":{"total_size":84},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}}"#
        try AtomicFile.write(Data(index.utf8), to: dir.appendingPathComponent(SafetensorsCheckpoint.indexFileName))
        let ckpt = try SafetensorsCheckpoint(directory: dir)
        XCTAssertEqual(ckpt.names, ["a", "b", "c"])
        XCTAssertEqual(ckpt.totalElements, 12 + 5 + 4)
        XCTAssertEqual(try ckpt.tensor("c").scalars, c.scalars)
        XCTAssertEqual(try ckpt.tensor("a").scalars, a.scalars)
        XCTAssertThrowsError(try ckpt.tensor("d")) { XCTAssertTrue("\($0)".contains("'d'")) }

        // Index naming a tensor the shard lacks, and a missing shard.
        let bad = #"{"weight_map":{"a":"model-00001-of-00002.safetensors","z":"model-00002-of-00002.safetensors"}}"#
        try AtomicFile.write(Data(bad.utf8), to: dir.appendingPathComponent(SafetensorsCheckpoint.indexFileName))
        XCTAssertThrowsError(try SafetensorsCheckpoint(directory: dir)) {
            XCTAssertTrue("\($0)".contains("'z'") && "\($0)".contains("model-00002-of-00002.safetensors"), "\($0)")
        }
        let missing = #"{"weight_map":{"a":"model-00009-of-00009.safetensors"}}"#
        try AtomicFile.write(Data(missing.utf8), to: dir.appendingPathComponent(SafetensorsCheckpoint.indexFileName))
        XCTAssertThrowsError(try SafetensorsCheckpoint(directory: dir)) { XCTAssertTrue("\($0)".contains("model-00009-of-00009"), "\($0)") }
        try AtomicFile.write(Data("{oops".utf8), to: dir.appendingPathComponent(SafetensorsCheckpoint.indexFileName))
        XCTAssertThrowsError(try SafetensorsCheckpoint(directory: dir)) { XCTAssertTrue("\($0)".contains("index.json"), "\($0)") }
        XCTAssertThrowsError(try SafetensorsCheckpoint(directory: dir.appendingPathComponent("nowhere")))
    }

    // MARK: atomic writes

    func testAtomicWriteReplacesAndLeavesNoTemporaries() throws {
        let dir = try temporaryDirectory("atomic")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("out.bin")
        try AtomicFile.write(Data("old".utf8), to: url)
        try AtomicFile.write(Data("new content".utf8), to: url)
        XCTAssertEqual(try Data(contentsOf: url), Data("new content".utf8))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["out.bin"])
    }

    /// A crash after the temporary file is complete but before the rename leaves the
    /// old file untouched (simulated by throwing from the pre-rename hook).
    func testAtomicWriteInterruptedBeforeRenameKeepsOldFile() throws {
        let dir = try temporaryDirectory("atomic2")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("model.safetensors")
        var rng = RandomGenerator(seed: 6)
        let old = Tensor.normal([4, 4], using: &rng)
        try SafetensorsWriter.write(["w": old], to: url)
        let oldBytes = try Data(contentsOf: url)
        struct Crash: Error {}
        var sawTemp: Data?
        XCTAssertThrowsError(try AtomicFile.write(to: url, body: { try $0.write(Data(repeating: 0xAB, count: 100)) }, beforeRename: { temp in
            sawTemp = try Data(contentsOf: temp)
            XCTAssertEqual(temp.deletingLastPathComponent().standardizedFileURL.path, dir.standardizedFileURL.path, "temporary file beside the target")
            throw Crash()
        })) { XCTAssertTrue($0 is Crash) }
        XCTAssertEqual(sawTemp, Data(repeating: 0xAB, count: 100), "the new content was fully written to the temporary file")
        XCTAssertEqual(try Data(contentsOf: url), oldBytes, "old file intact")
        XCTAssertEqual(try SafetensorsFile(url: url).tensor("w").scalars, old.scalars)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["model.safetensors"], "temporary removed")
    }
}
