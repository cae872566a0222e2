import CoreVideo
import Foundation
import SailEdgeFFI

/// One conversation (`sail_session`): images and questions in, answers out as an `AsyncThrowingStream` of
/// text pieces.
///
/// Every C call on the session runs on the session's own serial queue: the C session is used by one thread
/// at a time, and its calls block (decoding images, encoding tiles, generating) for far longer than work on
/// Swift's cooperative thread pool should. Calls from several tasks queue up in order. ``cancel()`` is the
/// exception: it reaches a running answer from any thread, without waiting.
public actor SailSession {
    private nonisolated let handle: Handle
    private nonisolated let queue = DispatchQueue(label: "dev.sailedge.session", qos: .userInitiated)

    init(engine: SailEngine) throws {
        var session: OpaquePointer?
        try SailError.check(sail_session_new(engine.handle, &session))
        guard let session else { throw SailError(status: SAIL_ERR_INTERNAL, message: "sail_session_new gave no session") }
        handle = Handle(raw: session)
    }

    deinit {
        // Every queued call holds the session (`self`), so nothing runs on it any more.
        sail_session_free(handle.raw)
    }

    /// Add a PNG or JPEG file to the next question.
    public func add(imageAt url: URL) async throws {
        let path = url.path
        try await run { try SailError.check(sail_session_add_image_file($0, path)) }
    }

    /// Add an encoded PNG or JPEG to the next question.
    public func add(imageData data: Data) async throws {
        try await run { session in
            try data.withUnsafeBytes { bytes in
                try SailError.check(
                    sail_session_add_image_bytes(session, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count)
                )
            }
        }
    }

    /// Add a camera frame (`kCVPixelFormatType_32BGRA`: set it in `AVCaptureVideoDataOutput.videoSettings`)
    /// to the next question. The pixels are converted before this returns, so the buffer can go back to the
    /// capture pool at once.
    public func add(pixelBuffer: CVPixelBuffer) async throws {
        let format = CVPixelBufferGetPixelFormatType(pixelBuffer)
        guard format == kCVPixelFormatType_32BGRA else {
            throw SailError.argument(
                "pixel buffer format \(fourCC(format)) is not 32BGRA: ask AVCaptureVideoDataOutput for "
                    + "kCVPixelFormatType_32BGRA in videoSettings"
            )
        }
        let buffer = UncheckedSendable(value: pixelBuffer)
        try await run { session in
            let pixels = buffer.value
            guard CVPixelBufferLockBaseAddress(pixels, .readOnly) == kCVReturnSuccess else {
                throw SailError.argument("the pixel buffer could not be locked for reading")
            }
            defer { CVPixelBufferUnlockBaseAddress(pixels, .readOnly) }
            guard let base = CVPixelBufferGetBaseAddress(pixels) else {
                throw SailError.argument("the pixel buffer has no base address")
            }
            // Rows are bytesPerRow apart, often more than 4 × width (CoreVideo pads them for alignment).
            try SailError.check(
                sail_session_add_frame(
                    session, base.assumingMemoryBound(to: UInt8.self),
                    UInt32(CVPixelBufferGetWidth(pixels)), UInt32(CVPixelBufferGetHeight(pixels)),
                    UInt32(CVPixelBufferGetBytesPerRow(pixels)), SAIL_PIXEL_BGRA8
                )
            )
        }
    }

    /// The system prompt of the next conversation (nil: the model's); set it on a new or reset session.
    public func setSystem(_ system: String?) async throws {
        try await run { session in
            try SailError.check(withOptionalCString(system) { sail_session_set_system(session, $0) })
        }
    }

    /// Sampling for the next answers (the default is greedy).
    public struct Sampling: Sendable {
        public var temperature: Float = 0
        public var topK: Int32 = 0
        public var topP: Float = 1
        public var minP: Float = 0
        public var repetitionPenalty: Float = 1
        /// The same seed and question give the same answer.
        public var seed: UInt64 = 0

        public init() {}
        public static let greedy = Sampling()
    }

    public func setSampling(_ sampling: Sampling) async throws {
        try await run { session in
            var params = sail_sampling_params()
            sail_sampling_params_init(&params)
            params.temperature = sampling.temperature
            params.top_k = sampling.topK
            params.top_p = sampling.topP
            params.min_p = sampling.minP
            params.repetition_penalty = sampling.repetitionPenalty
            params.seed = sampling.seed
            try SailError.check(sail_session_set_sampling(session, &params))
        }
    }

    /// Forget the conversation and the pending images (sampling and system prompt stay).
    public func reset() async throws {
        try await run { try SailError.check(sail_session_reset($0)) }
    }

    /// Where the time of the last answer went.
    public struct Timings: Sendable {
        public var preprocessMs, encodeMs, prefillMs, decodeMs: Double
        public var tiles, tilesCached, promptTokens, prefilledTokens, generatedTokens: Int
    }

    public func timings() async throws -> Timings {
        try await run { session in
            var t = sail_timings()
            sail_timings_init(&t)  // sets struct_size, which the library checks
            try SailError.check(sail_session_timings(session, &t))
            return Timings(
                preprocessMs: t.preprocess_ms, encodeMs: t.encode_ms, prefillMs: t.prefill_ms,
                decodeMs: t.decode_ms, tiles: Int(t.tiles), tilesCached: Int(t.tiles_cached),
                promptTokens: Int(t.prompt_tokens), prefilledTokens: Int(t.prefilled_tokens),
                generatedTokens: Int(t.generated_tokens)
            )
        }
    }

    /// Ask `question` about the images added since the last question and the conversation so far. The
    /// answer comes as text pieces while it is generated (greedy unless ``setSampling(_:)`` said otherwise);
    /// `maxTokens` 0 is the library's default (512).
    ///
    /// Cancelling the task that reads the stream (or dropping the stream) calls `sail_session_cancel`: the
    /// answer stops at once, prompt included, and the session is as it was before the question. A
    /// ``cancel()`` from elsewhere ends the stream with ``SailError/Kind/cancelled``, so a cut-off answer is
    /// never taken for a complete one. The stream holds the session until the answer ends.
    public nonisolated func ask(_ question: String, maxTokens: Int = 0) -> AsyncThrowingStream<String, Error> {
        AsyncThrowingStream { continuation in
            let stop = StopFlag()
            continuation.onTermination = { [self] termination in
                if case .cancelled = termination {
                    stop.set()
                    self.cancel()
                }
            }
            queue.async { [self] in
                self.answer(question, maxTokens: Int32(clamping: maxTokens), into: continuation, stop: stop)
            }
        }
    }

    /// The whole answer as one string.
    public func answer(_ question: String, maxTokens: Int = 0) async throws -> String {
        var text = ""
        for try await piece in ask(question, maxTokens: maxTokens) { text += piece }
        return text
    }

    /// Stop the running question (prompt or answer) as soon as possible, from any thread; the session stays
    /// usable and is as it was before the question.
    public nonisolated func cancel() {
        sail_session_cancel(handle.raw)
    }

    // MARK: - On the queue

    /// The pull loop of ``ask(_:maxTokens:)``, on the session's queue.
    private nonisolated func answer(
        _ question: String, maxTokens: Int32, into continuation: AsyncThrowingStream<String, Error>.Continuation,
        stop: StopFlag
    ) {
        let session = handle.raw
        if stop.isSet {
            continuation.finish(throwing: CancellationError())
            return
        }
        var status = sail_session_ask(session, question, maxTokens)
        while status == SAIL_OK {
            // sail_session_ask clears a cancel that came before it; repeat one that raced with it.
            if stop.isSet { sail_session_cancel(session) }
            var piece: UnsafePointer<CChar>?
            status = sail_session_next(session, &piece)
            if status == SAIL_OK, let piece {
                // The piece is valid until the next call: copy it now.
                if case .terminated = continuation.yield(String(cString: piece)) {
                    stop.set()
                    sail_session_cancel(session)
                }
            }
        }
        switch status {
        case SAIL_DONE: continuation.finish()
        case SAIL_CANCELLED: continuation.finish(throwing: stop.isSet ? CancellationError() : SailError.cancelled)
        default: continuation.finish(throwing: SailError.last(status))
        }
    }

    /// Run `body` on the queue with the C session and hand back its result. `self` is held until it ran.
    private func run<T: Sendable>(_ body: @escaping @Sendable (OpaquePointer) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { [self] in
                continuation.resume(with: Result { try body(self.handle.raw) })
            }
        }
    }
}

/// The C session pointer. @unchecked: the pointer itself is only an address; the session guards its use
/// (one queue for calls, `sail_session_cancel` from anywhere).
struct Handle: @unchecked Sendable {
    let raw: OpaquePointer
}

/// A CoreVideo buffer carried to the session's queue; CVPixelBuffer is thread-safe to read once locked.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
}

/// Set once when the reader of an answer goes away; read by the pull loop between pieces.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var stopped = false

    func set() {
        lock.lock()
        stopped = true
        lock.unlock()
    }

    var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopped
    }
}

/// "420v" for a pixel format code, for error messages.
private func fourCC(_ code: OSType) -> String {
    let bytes = [24, 16, 8, 0].map { UInt8((code >> $0) & 0xFF) }
    return String(bytes: bytes, encoding: .ascii) ?? String(code)
}
