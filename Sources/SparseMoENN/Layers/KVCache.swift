import SparseMoECore

/// Keys and values of the positions seen so far, per attention layer, for
/// incremental decoding of one sequence (batch 1).
///
/// Each layer's entry holds k `[1, S, KV, D]` and v `[1, S, KV, Dv]` in buffers of
/// `capacity` positions; appending copies only the new rows.
public final class KVCache {
    public let capacity: Int
    final class Entry {
        var keys: Tensor
        var values: Tensor
        var length = 0
        init(keys: Tensor, values: Tensor) { self.keys = keys; self.values = values }
    }
    var entries: [Int: Entry] = [:]

    public init(capacity: Int) { self.capacity = capacity }

    /// Number of positions cached (layer 0's length).
    public var length: Int { entries[0]?.length ?? 0 }

    /// Appends k `[1, T, KV, D]`, v `[1, T, KV, Dv]` for `layer`; returns views of all cached
    /// keys and values `[1, S, KV, ·]`.
    func append(layer: Int, keys k: Tensor, values v: Tensor) throws -> (keys: Tensor, values: Tensor) {
        guard k.shape[0] == 1 else {
            throw SparseMoEError.invalidArgument(op: "KVCache", message: "the cache decodes one sequence at a time (batch 1), got batch \(k.shape[0])")
        }
        let t = k.shape[1]
        let entry = try copyIn(layer: layer, keys: k.floats, values: v.floats, rows: t, keyRow: k.count / t, valueRow: v.count / t)
        let s = entry.length
        return (Tensor(storage: entry.keys.storage, shape: [1, s] + Array(k.shape.dropFirst(2))),
                Tensor(storage: entry.values.storage, shape: [1, s] + Array(v.shape.dropFirst(2))))
    }

    /// Appends rows `rows` of a ragged batch's k `[1, N, KV, D]` and v `[1, N, KV, Dv]` (this
    /// sequence's new tokens) for `layer`; returns the cached keys `[S, KV, D]` and values
    /// `[S, KV, Dv]` in place (buffers of `capacity` positions, valid until `reset()`) and S.
    func append(layer: Int, keys k: Tensor, values v: Tensor, rows: Range<Int>)
        throws -> (keys: UnsafePointer<Float>, values: UnsafePointer<Float>, length: Int) {
        let n = k.shape[1], keyRow = k.count / max(n, 1), valueRow = v.count / max(n, 1)
        let entry = try copyIn(layer: layer, keys: k.floats + rows.lowerBound * keyRow, values: v.floats + rows.lowerBound * valueRow,
                               rows: rows.count, keyRow: keyRow, valueRow: valueRow)
        return (UnsafePointer(entry.keys.floats), UnsafePointer(entry.values.floats), entry.length)
    }

    /// Copies `t` rows of keys (`keyRow` floats each) and values to the end of `layer`'s entry.
    private func copyIn(layer: Int, keys: UnsafePointer<Float>, values: UnsafePointer<Float>, rows t: Int,
                        keyRow: Int, valueRow: Int) throws -> Entry {
        // Positions at and past `length` are never read (attention reads the first `length`), so
        // the buffers need no zero fill.
        let entry = entries[layer] ?? Entry(keys: Tensor(uninitialized: [capacity * keyRow]),
                                            values: Tensor(uninitialized: [capacity * valueRow]))
        entries[layer] = entry
        guard entry.length + t <= capacity else {
            throw SparseMoEError.invalidArgument(op: "KVCache", message: "sequence would reach \(entry.length + t) positions, beyond the cache capacity \(capacity) (max_position_embeddings)")
        }
        (entry.keys.floats + entry.length * keyRow).update(from: keys, count: t * keyRow)
        (entry.values.floats + entry.length * valueRow).update(from: values, count: t * valueRow)
        entry.length += t
        return entry
    }

    /// Forgets everything.
    public func reset() { entries = [:] }
}
