import Foundation

/// Reads a file a user named (a config, a tokenizer, an index) with errors that say what
/// is wrong: missing, a directory, a device or socket, not readable — never a raw
/// Foundation error such as "You don't have permission" for `/dev/null`.
package enum UserFile {
    /// The bytes of the regular file (or named pipe) at `url`; `what` names it in errors
    /// ("a TransformerConfig JSON file").
    package static func read(_ url: URL, what: String) throws -> Data {
        let path = url.path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw SparseMoEError.file(path: path, message: "no such file; expected \(what)")
        }
        guard !isDirectory.boolValue else { throw SparseMoEError.file(path: path, message: "is a directory; expected \(what)") }
        var info = stat()
        if stat(path, &info) == 0 {
            let type = info.st_mode & S_IFMT
            if type != S_IFREG && type != S_IFIFO {
                let kind = type == S_IFCHR ? "a character device" : type == S_IFBLK ? "a block device" : type == S_IFSOCK ? "a socket" : "not a regular file"
                throw SparseMoEError.file(path: path, message: "is \(kind); expected \(what)")
            }
        }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw SparseMoEError.file(path: path, message: "is not readable (permission denied); expected \(what)")
        }
        do {
            let handle = try FileHandle(forReadingFrom: url)
            defer { try? handle.close() }
            return try handle.readToEnd() ?? Data()
        } catch {
            throw SparseMoEError.file(path: path, message: "cannot be read (\(error.localizedDescription)); expected \(what)")
        }
    }
}
