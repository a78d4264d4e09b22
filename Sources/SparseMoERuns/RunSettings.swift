import Foundation
import SparseMoE

/// The settings every data-parallel rank of a `moe train` job must share, as named fields for
/// `SettingsAgreement`: the run options (model source, data, every training setting), how the
/// run was started (resume, force, a step override), the model's resolved configuration (a
/// config file that differs between hosts is caught), the data set's size and an FNV-1a 64 of
/// its tokens, and whatever the caller adds (the command's parallel flags). The output folder
/// is left out: rank 0 alone writes there.
enum RunSettings {
    static func fields(options: TrainingRunOptions, model: TransformerConfig, dataset: TextDataset,
                       resume: Bool, force: Bool, steps: Int?, extra: [(name: String, value: String)]) throws -> [(name: String, value: String)] {
        var out = try flattened(options, prefix: "run").filter { $0.name != "run.outputDirectory" }
        out += try flattened(model, prefix: "model")
        out.append(("start.resume", "\(resume)"))
        out.append(("start.force", "\(force)"))
        out.append(("start.steps", steps.map { "\($0)" } ?? "none"))
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for t in dataset.tokens { h = (h ^ UInt64(UInt32(bitPattern: t))) &* 0x100_0000_01b3 }
        out.append(("data.tokens", "\(dataset.tokens.count)"))
        out.append(("data.fnv1a", String(h, radix: 16)))
        return out + extra
    }

    /// `value` as JSON, flattened to one field per leaf: `prefix.key.key[i]` = the leaf's JSON text.
    static func flattened<T: Encodable>(_ value: T, prefix: String) throws -> [(name: String, value: String)] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let object = try JSONSerialization.jsonObject(with: try encoder.encode(value), options: [.fragmentsAllowed])
        var out: [(name: String, value: String)] = []
        func walk(_ v: Any, _ path: String) {
            if let d = v as? [String: Any] {
                for k in d.keys.sorted() { walk(d[k]!, path + "." + k) }
            } else if let a = v as? [Any] {
                for (i, x) in a.enumerated() { walk(x, path + "[\(i)]") }
            } else if v is NSNull {
                out.append((path, "null"))
            } else {
                let data = (try? JSONSerialization.data(withJSONObject: v, options: [.fragmentsAllowed, .sortedKeys])) ?? Data("\(v)".utf8)
                out.append((path, String(decoding: data, as: UTF8.self)))
            }
        }
        walk(object, prefix)
        return out
    }
}
