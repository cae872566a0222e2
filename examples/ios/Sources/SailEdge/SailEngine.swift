import Foundation
import SailEdgeFFI
import os

/// A loaded SAIL-VL2 model (`sail_engine`). Open one per app and share it: it is thread-safe, and every
/// ``SailSession`` made from it shares its weights, worker threads and tile-feature cache.
///
/// Sessions hold a reference to the engine inside the library, so the engine object may go before them.
public final class SailEngine: @unchecked Sendable {
    // @unchecked: the only state is the C handle, which the library makes thread-safe; it is freed in deinit,
    // when nothing can use it any more.
    let handle: OpaquePointer

    /// How to open the engine. 0 and nil mean the library's default.
    public struct Configuration: Sendable {
        /// The language-model GGUF (a bundle resource works: it is memory-mapped, not copied).
        public var modelURL: URL
        /// The vision GGUF; nil: the `mmproj-*.gguf` beside the model, if there is one.
        public var mmprojURL: URL?
        /// Worker threads; 0: the number of physical cores. On iPhones, try the performance cores only (2):
        /// the work is split evenly, so efficiency cores hold the others back.
        public var threads: Int32 = 0
        /// Most positions a session may hold; 0: the model's. A smaller context is less KV memory.
        public var contextLength: Int32 = 0
        /// Tiles per still image; 0: the mmproj file's. Fewer tiles answer sooner.
        public var maxTiles: Int32 = 0
        /// A board profile name, "auto", or nil for none (profiles describe single-board computers).
        public var board: String?

        public init(modelURL: URL, mmprojURL: URL? = nil) {
            self.modelURL = modelURL
            self.mmprojURL = mmprojURL
        }
    }

    /// Load a model, blocking the calling thread for a while (files mapped, weights laid out for the CPU's
    /// kernels). From async code use ``open(_:)``.
    public init(_ configuration: Configuration) throws {
        var params = sail_engine_params()
        sail_engine_params_init(&params)  // defaults for every field, struct_size set
        params.n_threads = configuration.threads
        params.context_length = configuration.contextLength
        params.max_tiles = configuration.maxTiles
        var engine: OpaquePointer?
        // The C strings live only inside withCString, so the call is made there.
        let status: sail_status = configuration.modelURL.path.withCString { model in
            withOptionalCString(configuration.mmprojURL?.path) { mmproj in
                withOptionalCString(configuration.board) { board -> sail_status in
                    params.model_path = model
                    params.mmproj_path = mmproj
                    params.board = board
                    return sail_engine_open(&params, &engine)
                }
            }
        }
        try SailError.check(status)
        guard let engine else { throw SailError(status: SAIL_ERR_INTERNAL, message: "sail_engine_open gave no engine") }
        handle = engine
    }

    /// Load a model off the caller's executor (the cooperative pool must not block).
    public static func open(_ configuration: Configuration) async throws -> SailEngine {
        try await Task.detached(priority: .userInitiated) { try SailEngine(configuration) }.value
    }

    deinit {
        sail_engine_free(handle)
    }

    /// A new conversation on this engine.
    public func makeSession() throws -> SailSession {
        try SailSession(engine: self)
    }

    /// The native library's version.
    public static var version: String { String(cString: sail_version()) }

    public enum LogLevel: UInt32, Sendable {
        case off = 0, error, warning, info, debug, trace
    }

    /// Send the library's log to the unified log (subsystem `dev.sailedge`), up to `maxLevel`. Process-wide.
    /// The messages come from the runtime's own threads; the callback only formats and logs.
    public static func setLogLevel(_ maxLevel: LogLevel) {
        guard maxLevel != .off else {
            sail_set_log_callback(nil, SAIL_LOG_ERROR, nil)
            return
        }
        sail_set_log_callback({ level, message, _ in
            guard let message else { return }
            let text = String(cString: message)
            switch level {
            case SAIL_LOG_ERROR: sailLog.error("\(text, privacy: .public)")
            case SAIL_LOG_WARN: sailLog.warning("\(text, privacy: .public)")
            case SAIL_LOG_INFO: sailLog.info("\(text, privacy: .public)")
            default: sailLog.debug("\(text, privacy: .public)")
            }
        }, sail_log_level(rawValue: .init(maxLevel.rawValue)), nil)
    }
}

private let sailLog = Logger(subsystem: "dev.sailedge", category: "runtime")

/// `body` with a C string for `string`, or NULL for nil (the C API's "default").
func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) throws -> R) rethrows -> R {
    guard let string else { return try body(nil) }
    return try string.withCString { try body($0) }
}
