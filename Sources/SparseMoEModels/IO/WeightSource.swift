import SparseMoECore

/// A checkpoint tensor seen as weight rows, straight from the file's mapping: plain floats
/// (F32, BF16, F16; F64 is converted to float32 first) or the library's quantized layout,
/// where tensor `name` holds the packed rows and `name_scale` the scales (docs/inference.md):
///
/// | dtype | `name` | `name_scale` |
/// |---|---|---|
/// | int8 | I8 `[..., N, K]` | F32 `[..., N]` |
/// | int4 | U8 `[..., N, 16·⌈K/32⌉]` (Q4 blocks) | F16 `[..., N, ⌈K/32⌉]` |
///
/// The pointers stay valid while the checkpoint is open.
package struct WeightSource {
    package let dtype: DType
    package let data: UnsafeRawPointer
    package let scales: UnsafeRawPointer?
    /// Logical shape `[..., N, K]`.
    package let shape: [Int]
    /// The checkpoint tensors read (the data and, for int8/int4, the scales).
    package let tensorNames: [String]
    /// The file holding them.
    package let file: SafetensorsFile
    /// Keeps a converted copy alive (F64 sources).
    private let converted: Tensor?

    /// Name of the scales tensor of quantized tensor `name`.
    package static func scaleName(_ name: String) -> String { name + "_scale" }

    /// Rows `first ..< first + count` (of the `[rows, K]` flattening) written into `dest`
    /// starting at its row `at`.
    package func write(rows first: Int, count: Int, into dest: Tensor, at row: Int) {
        let cols = shape.last ?? 1
        let scaleBytes = dtype.scaleDType?.elementBytes ?? 0
        dest.writeRows(row, count: count, from: data + first * dtype.rowBytes(cols),
                       scales: scales.map { $0 + first * dtype.scalesPerRow(cols) * scaleBytes }, dtype: dtype)
    }

    /// Fails naming the tensor when a value (or a scale) is not finite.
    package func requireFinite() throws {
        let rows = shape.dropLast().reduce(1, *), cols = shape.last ?? 1
        let bad: (String, Int)?
        switch dtype {
        case .float32, .bfloat16, .float16:
            bad = firstNonFinite(data, dtype: dtype, count: rows * cols).map { (tensorNames[0], $0) }
        case .int8: bad = firstNonFinite(scales!, dtype: .float32, count: rows).map { (tensorNames[1], $0) }
        case .int4:
            bad = firstNonFinite(scales!, dtype: .float16, count: rows * dtype.scalesPerRow(cols)).map { (tensorNames[1], $0) }
        case .int32: bad = nil
        }
        if let (name, i) = bad {
            let base = name == tensorNames[0] ? data : scales!
            let value: Float
            switch dtype == .int4 && name != tensorNames[0] ? .float16 : dtype {
            case .bfloat16: value = HalfPrecision.float(fromBFloat16Bits: base.load(fromByteOffset: 2 * i, as: UInt16.self))
            case .float16, .int4: value = HalfPrecision.float(fromFloat16Bits: base.load(fromByteOffset: 2 * i, as: UInt16.self))
            default: value = base.load(fromByteOffset: 4 * i, as: Float.self)
            }
            throw SparseMoEError.file(path: file.path, message: "tensor '\(name)' holds a non-finite value (\(value) at element \(i) of shape \(file.info(name)?.shape ?? [])); the model would compute NaN logits — re-export the checkpoint from a finite model")
        }
    }

    /// Reads tensor `name` of `file` as weights of logical shape `shape` (`parameter` names
    /// the library parameter in errors). Throws naming the file and the tensor for a
    /// non-float dtype, a wrong shape, or missing or misshapen scales.
    package init(file: SafetensorsFile, name: String, shape: [Int], parameter: String) throws {
        guard let info = file.info(name) else {
            throw SparseMoEError.file(path: file.path, message: "tensor '\(name)' not found")
        }
        self.file = file
        self.shape = shape
        let cols = shape.last ?? 1, lead = Array(shape.dropLast())
        func fail(_ m: String) -> SparseMoEError { .file(path: file.path, message: m) }
        func requireShape(_ s: [Int], _ what: String) throws {
            guard info.shape == s else {
                throw fail("tensor '\(name)' has shape \(info.shape), expected \(s) (parameter '\(parameter)'\(what))")
            }
        }
        switch info.dtype {
        case .f32, .bf16, .f16:
            try requireShape(shape, "")
            dtype = info.dtype == .f32 ? .float32 : info.dtype == .bf16 ? .bfloat16 : .float16
            data = try UnsafeRawPointer(file.rawBytes(name).baseAddress ?? UnsafeRawPointer(bitPattern: 64)!)
            scales = nil
            tensorNames = [name]
            converted = nil
        case .f64:
            try requireShape(shape, "")
            let t = try file.tensor(name)
            dtype = .float32
            data = UnsafeRawPointer(t.rawBase)
            scales = nil
            tensorNames = [name]
            converted = t
        case .i8, .u8:
            let q: DType = info.dtype == .i8 ? .int8 : .int4
            let scaleName = Self.scaleName(name)
            let perRow = q.scalesPerRow(cols)
            try requireShape(lead + [q == .int8 ? cols : q.rowBytes(cols)], q == .int8
                ? ", stored as int8" : ", stored as int4: \(perRow) groups of \(DType.int4GroupSize) packed in 16 bytes each per row")
            guard let s = file.info(scaleName) else {
                throw fail("tensor '\(name)' is \(info.dtype.rawValue) (\(q.rawValue) weights) but its scales '\(scaleName)' are missing from this file")
            }
            let scaleShape = q == .int8 ? lead : lead + [perRow]
            let scaleType: SafetensorsDType = q == .int8 ? .f32 : .f16
            guard s.dtype == scaleType, s.shape == scaleShape else {
                throw fail("scales '\(scaleName)' are \(s.dtype.rawValue) \(s.shape), expected \(scaleType.rawValue) \(scaleShape) for \(q.rawValue) weights \(shape)\(q == .int4 ? " in groups of \(DType.int4GroupSize)" : "")")
            }
            dtype = q
            data = try UnsafeRawPointer(file.rawBytes(name).baseAddress ?? UnsafeRawPointer(bitPattern: 64)!)
            scales = try UnsafeRawPointer(file.rawBytes(scaleName).baseAddress ?? UnsafeRawPointer(bitPattern: 64)!)
            tensorNames = [name, scaleName]
            converted = nil
        default:
            throw fail("tensor '\(name)' has dtype \(info.dtype.rawValue), expected a floating type (F32, F16, BF16) or the library's int8/int4 layout (I8/U8 with '\(Self.scaleName(name))')")
        }
    }
}

extension SafetensorsCheckpoint {
    /// Per storage dtype: how many weight tensors, parameters and bytes (scales included) the
    /// checkpoint holds, read from the headers alone (`moe info --model`). I8 / U8 tensors
    /// with a `_scale` companion count as int8 / int4 (U8 rows hold 32 values per 16 bytes).
    public func storageSummary() -> [(dtype: String, tensors: Int, parameters: Int, bytes: Int)] {
        var rows: [String: (Int, Int, Int)] = [:]
        let names = Set(self.names)
        for name in self.names {
            guard let info = info(name) else { continue }
            if name.hasSuffix("_scale"), names.contains(String(name.dropLast("_scale".count))) { continue }
            let scale = names.contains(WeightSource.scaleName(name)) ? self.info(WeightSource.scaleName(name)) : nil
            let key: String
            var parameters = info.elementCount
            var bytes = info.dataOffsets.count
            switch (info.dtype, scale) {
            case (.i8, let s?): key = "int8"; bytes += s.dataOffsets.count
            case (.u8, let s?): key = "int4"; parameters = s.elementCount * DType.int4GroupSize; bytes += s.dataOffsets.count
            default: key = info.dtype.rawValue.lowercased()
            }
            let old = rows[key] ?? (0, 0, 0)
            rows[key] = (old.0 + 1, old.1 + parameters, old.2 + bytes)
        }
        return rows.keys.sorted().map { ($0, rows[$0]!.0, rows[$0]!.1, rows[$0]!.2) }
    }
}
