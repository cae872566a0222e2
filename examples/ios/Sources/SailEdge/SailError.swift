import SailEdgeFFI

/// A failed sail-edge call: what kind of failure (the C `sail_status`) and `sail_last_error()`'s message,
/// which names the file, argument or limit at fault.
public struct SailError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// `sail_session_cancel` (``SailSession/cancel()``) stopped the answer; the session is as it was
        /// before the question.
        case cancelled
        /// A bad argument: an empty question, a frame that does not add up, a closed handle…
        case argument
        /// A file could not be read.
        case io
        /// A file is not what it should be (model, mmproj, image).
        case format
        /// The conversation no longer fits the context: ``SailSession/reset()``, or open a longer context.
        case contextFull
        /// A bug in the library (a caught panic) or a failure of the system.
        case `internal`
    }

    public let kind: Kind
    /// The raw `sail_status`.
    public let status: Int32
    public let message: String

    public var description: String { message }

    init(status: sail_status, message: String) {
        self.status = status.rawValue
        self.message = message
        switch status {
        case SAIL_CANCELLED: kind = .cancelled
        case SAIL_ERR_ARG: kind = .argument
        case SAIL_ERR_IO: kind = .io
        case SAIL_ERR_FORMAT: kind = .format
        case SAIL_ERR_CONTEXT_FULL: kind = .contextFull
        default: kind = .internal
        }
    }

    /// The error of the call that just returned `status`. Read on the same thread as that call:
    /// `sail_last_error()` is per thread (which is why every call runs on the session's own queue).
    static func last(_ status: sail_status) -> SailError {
        let message = sail_last_error().map { String(cString: $0) } ?? ""
        return SailError(
            status: status,
            message: message.isEmpty ? String(cString: sail_status_name(status.rawValue)) : message
        )
    }

    /// Throws when `status` is a failure (negative).
    static func check(_ status: sail_status) throws {
        if status.rawValue < 0 { throw last(status) }
    }

    static let cancelled = SailError(status: SAIL_CANCELLED, message: "the answer was cancelled")

    static func argument(_ message: String) -> SailError {
        SailError(status: SAIL_ERR_ARG, message: message)
    }
}
