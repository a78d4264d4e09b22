#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

#if canImport(Glibc)
private let posixWrite = Glibc.write
#else
private let posixWrite = Darwin.write
#endif

/// Atomic file replacement: the destination holds either its old content or the
/// complete new content, never a partial write.
///
/// Protocol: write to a uniquely named temporary file in the destination's
/// directory (same file system, so `rename` is atomic), `fsync` it, `rename` it over
/// the destination, then `fsync` the directory so the rename itself is durable. If
/// anything fails before the rename the temporary file is removed and the
/// destination is untouched.
public enum AtomicFile {
    /// A sequential writer onto the temporary file.
    public struct Sink {
        let fd: Int32
        let path: String

        /// Writes all of `bytes`, retrying short writes and EINTR.
        public func write(_ bytes: UnsafeRawBufferPointer) throws {
            var done = 0
            while done < bytes.count {
                let r = posixWrite(fd, bytes.baseAddress! + done, bytes.count - done)
                if r < 0 {
                    if errno == EINTR { continue }
                    throw SparseMoEError.file(path: path, message: "write failed: \(String(cString: strerror(errno)))")
                }
                done += r
            }
        }

        public func write(_ data: Data) throws {
            try data.withUnsafeBytes { try write($0) }
        }
    }

    /// Writes `data` to `url` atomically.
    public static func write(_ data: Data, to url: URL) throws {
        try write(to: url) { try $0.write(data) }
    }

    /// Streams content produced by `body` to `url` atomically.
    public static func write(to url: URL, _ body: (Sink) throws -> Void) throws {
        try write(to: url, body: body, beforeRename: { _ in })
    }

    /// The same, with a hook called after the temporary file is complete and synced
    /// but before the rename (tests use it to simulate a crash at that point).
    static func write(to url: URL, body: (Sink) throws -> Void, beforeRename: (URL) throws -> Void) throws {
        let destination = url.standardizedFileURL
        let directory = destination.deletingLastPathComponent()
        var rng = SystemRandomNumberGenerator()
        let tempURL = directory.appendingPathComponent(
            ".\(destination.lastPathComponent).tmp-\(getpid())-\(String(rng.next() & 0xFFFF_FFFF, radix: 16))")
        let tempPath = tempURL.path
        let fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else {
            throw SparseMoEError.file(path: destination.path, message: "cannot create temporary file \(tempPath): \(String(cString: strerror(errno)))")
        }
        var renamed = false
        var closed = false
        defer {
            if !closed { close(fd) }
            if !renamed { unlink(tempPath) }
        }
        try body(Sink(fd: fd, path: tempPath))
        guard fsync(fd) == 0 else {
            throw SparseMoEError.file(path: tempPath, message: "fsync failed: \(String(cString: strerror(errno)))")
        }
        closed = true
        guard close(fd) == 0 else {
            throw SparseMoEError.file(path: tempPath, message: "close failed: \(String(cString: strerror(errno)))")
        }
        try beforeRename(tempURL)
        guard rename(tempPath, destination.path) == 0 else {
            throw SparseMoEError.file(path: destination.path, message: "cannot rename \(tempPath) into place: \(String(cString: strerror(errno)))")
        }
        renamed = true
        let dfd = open(directory.path, O_RDONLY)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }  // best effort: some file systems refuse directory fsync
    }
}
