import XCTest
@testable import SparseMoECore
@testable import SparseMoEModels

/// Seeded fuzzing of the safetensors parser: random and mutated headers must either
/// load (and then every tensor reads within bounds) or throw `SparseMoEError.file`;
/// never crash.
final class SafetensorsFuzzTests: XCTestCase {
    private func validImage() throws -> Data {
        let f16: [UInt8] = [0x00, 0x3C, 0x00, 0xC0, 0xFF, 0x7B, 0x01, 0x00]
        let header = #"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"h":{"dtype":"F16","shape":[4],"data_offsets":[24,32]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[32,34]},"i":{"dtype":"I64","shape":[1],"data_offsets":[34,42]},"m":{"dtype":"BOOL","shape":[2],"data_offsets":[42,44]},"e":{"dtype":"I32","shape":[0],"data_offsets":[44,44]}}"#
        let data = [UInt8](repeating: 0x3F, count: 24) + f16 + [0x80, 0x3F] + [5, 0, 0, 0, 0, 0, 0, 0] + [1, 0]
        let image = safetensorsImage(header, data: data)
        _ = try SafetensorsFile(bytes: image)  // the seed must be valid
        return image
    }

    /// Exercises a parse: success means every tensor's bytes and conversion are usable.
    private func exercise(_ data: Data, _ counts: inout (loaded: Int, rejected: Int), _ note: @autoclosure () -> String) {
        do {
            let file = try SafetensorsFile(bytes: data, path: "fuzz.safetensors")
            for info in file.header.tensors {
                let n = try file.withRawBytes(info.name) { $0.count }
                XCTAssertEqual(n, info.elementCount * info.dtype.byteSize)
                XCTAssertLessThanOrEqual(file.header.dataStart + info.dataOffsets.upperBound, data.count)
                do {
                    let t = try file.tensor(info.name)
                    XCTAssertEqual(t.shape, info.shape)
                } catch let e as SparseMoEError {
                    guard case .file = e else { return XCTFail("unexpected error kind \(e)") }
                }
            }
            counts.loaded += 1
        } catch let e as SparseMoEError {
            guard case let .file(path, message) = e, path == "fuzz.safetensors", !message.isEmpty else {
                return XCTFail("error without the file name: \(e) [\(note())]")
            }
            counts.rejected += 1
        } catch {
            XCTFail("non-library error \(error) [\(note())]")
        }
    }

    private func randomJSONValue(_ rng: inout RandomGenerator, depth: Int) -> String {
        switch rng.int(below: depth > 3 ? 5 : 8) {
        case 0: return String(Int64(bitPattern: rng.next()) >> UInt64(rng.int(below: 64)))
        case 1: return String(rng.int(below: 100))
        case 2: return ["\"F32\"", "\"F16\"", "\"BF16\"", "\"I64\"", "\"X\"", "\"\"", "\"\\u0000\""][rng.int(below: 7)]
        case 3: return ["true", "false", "null", "1.5", "-0", "1e400", "-7"][rng.int(below: 7)]
        case 4: return "\"s\(rng.int(below: 10))\""
        case 5, 6:
            let n = rng.int(below: 4)
            return "[" + (0..<n).map { _ in randomJSONValue(&rng, depth: depth + 1) }.joined(separator: ",") + "]"
        default:
            let keys = ["dtype", "shape", "data_offsets", "__metadata__", "w", "x"]
            let n = rng.int(below: 4)
            return "{" + (0..<n).map { _ in "\"\(keys[rng.int(below: keys.count)])\":\(randomJSONValue(&rng, depth: depth + 1))" }.joined(separator: ",") + "}"
        }
    }

    /// A header whose entries are plausible but with random sizes and offsets.
    private func randomHeader(_ rng: inout RandomGenerator, dataSize: Int) -> String {
        let dtypes = ["F32", "F16", "BF16", "I32", "I64", "U8", "BOOL", "F64", "F8_E4M3", "Q4"]
        var entries: [String] = []
        for i in 0..<rng.int(below: 5) {
            let rank = rng.int(below: 4)
            let shape = (0..<rank).map { _ in String(rng.int(below: 6) - (rng.int(below: 20) == 0 ? 3 : 0)) }
            let b = rng.int(below: dataSize + 4), e = rng.int(below: 3) == 0 ? b + rng.int(below: 32) : rng.int(below: dataSize + 8)
            entries.append("\"t\(i)\":{\"dtype\":\"\(dtypes[rng.int(below: dtypes.count)])\",\"shape\":[\(shape.joined(separator: ","))],\"data_offsets\":[\(b),\(e)]}")
        }
        if rng.int(below: 4) == 0 { entries.append("\"__metadata__\":\(randomJSONValue(&rng, depth: 2))") }
        return "{" + entries.joined(separator: ",") + "}"
    }

    func testFuzzHeaders() throws {
        let seed = try validImage()
        var rng = RandomGenerator(seed: 2024)
        var counts = (loaded: 0, rejected: 0)
        let iterations = 4000
        for it in 0..<iterations {
            var data = seed
            let strategy = it % 7
            switch strategy {
            case 0:  // flip bytes, mostly in the header
                for _ in 0...rng.int(below: 6) {
                    let i = rng.int(below: 4) == 0 ? rng.int(below: data.count) : rng.int(below: min(data.count, 60 + rng.int(below: 400)))
                    data[i] ^= UInt8(truncatingIfNeeded: 1 << rng.int(below: 8) | (rng.int(below: 3) == 0 ? Int(rng.next() & 0xFF) : 0))
                }
            case 1:  // truncate
                data = data.prefix(rng.int(below: data.count))
            case 2:  // change the length field
                var n = UInt64(data.count - 52)
                switch rng.int(below: 3) {
                case 0: n = UInt64(Int64(n) + Int64(rng.int(below: 41)) - 20)
                case 1: n = rng.next()
                default: n = UInt64(rng.int(below: data.count + 16))
                }
                withUnsafeBytes(of: n.littleEndian) { data.replaceSubrange(0..<8, with: $0) }
            case 3:  // rewrite one number in the header
                var header = Array(String(decoding: data[8..<(data.count - 44)], as: UTF8.self))
                let digits = header.indices.filter { header[$0].isNumber }
                let i = digits[rng.int(below: digits.count)]
                var j = i
                while j < header.count && header[j].isNumber { j += 1 }
                let replacement = ["-1", "0", "1", "44", "45", "43", "9223372036854775807", "18446744073709551616", "2.0", "1e3", "-0", "7"][rng.int(below: 12)]
                header.replaceSubrange(i..<j, with: Array(replacement))
                data = safetensorsImage(String(header), data: Array(data.suffix(44)))
            case 4:  // plausible random header
                let dataSize = rng.int(below: 64)
                data = safetensorsImage(randomHeader(&rng, dataSize: dataSize), data: (0..<dataSize).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
            case 5:  // random JSON
                data = safetensorsImage(randomJSONValue(&rng, depth: 0), data: [UInt8](repeating: 0, count: rng.int(below: 16)))
            default:  // random bytes, sometimes behind a valid-looking length
                let n = rng.int(below: 96)
                data = Data((0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
                if n >= 8 && rng.int(below: 2) == 0 {
                    withUnsafeBytes(of: UInt64(rng.int(below: n - 7)).littleEndian) { data.replaceSubrange(0..<8, with: $0) }
                }
            }
            exercise(data, &counts, "iteration \(it), strategy \(strategy)")
        }
        XCTAssertEqual(counts.loaded + counts.rejected, iterations)
        // Both outcomes must occur, or the mutations are not reaching the parser.
        XCTAssertGreaterThan(counts.loaded, 50, "loaded \(counts.loaded), rejected \(counts.rejected)")
        XCTAssertGreaterThan(counts.rejected, 1000, "loaded \(counts.loaded), rejected \(counts.rejected)")
        print("safetensors fuzz: \(iterations) cases, \(counts.loaded) loaded, \(counts.rejected) rejected")
    }
}
