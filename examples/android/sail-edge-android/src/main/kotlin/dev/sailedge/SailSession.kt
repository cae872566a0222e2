package dev.sailedge

import androidx.camera.core.ImageProxy
import java.io.Closeable
import java.util.concurrent.atomic.AtomicBoolean
import java.util.concurrent.locks.ReentrantLock
import kotlin.concurrent.withLock
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.channels.trySendBlocking
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.flow.fold
import kotlinx.coroutines.isActive
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

/** How the bytes of a raw frame are laid out ([SailSession.addFrame]); YUV is BT.601 limited range. */
enum class PixelFormat(internal val native: Int) {
    RGB8(SailNative.PIXEL_RGB8),
    RGBA8(SailNative.PIXEL_RGBA8),
    BGRA8(SailNative.PIXEL_BGRA8),
    NV12(SailNative.PIXEL_NV12),
    /** Android's camera format: a luma plane, then V U pairs. */
    NV21(SailNative.PIXEL_NV21),
    YUYV(SailNative.PIXEL_YUYV),
}

/** Sampling for the answers ([SailSession.setSampling]); the default is greedy (temperature 0). */
data class Sampling(
    val temperature: Float = 0f,
    val topK: Int = 0,
    val topP: Float = 1f,
    val minP: Float = 0f,
    val repetitionPenalty: Float = 1f,
    /** The same seed and question give the same answer. */
    val seed: Long = 0,
)

/** Where the time of the last answer went ([SailSession.timings]). */
data class SailTimings(
    val preprocessMs: Double,
    val encodeMs: Double,
    val prefillMs: Double,
    val decodeMs: Double,
    val tiles: Int,
    val tilesCached: Int,
    val promptTokens: Int,
    val prefilledTokens: Int,
    val generatedTokens: Int,
)

/**
 * One conversation (`sail_session`): images and questions in, answers out as a [Flow] of text pieces.
 *
 * The native session is used by one thread at a time, so every call takes [lock] on [Dispatchers.IO] (they
 * block: decoding, encoding tiles, generating); calls from several coroutines queue up. [cancel] is the
 * exception: it takes no lock, so it reaches an answer that is running.
 */
class SailSession internal constructor(private var handle: Long) : Closeable {
    /** Held for every native call on the session, for the whole of an answer. */
    private val lock = ReentrantLock()
    /** Guards [handle] between [cancel] (lock-free) and [close], so a cancel never meets a freed session. */
    private val handleGuard = Any()
    /** Reused for camera frames (30 a second need not allocate 30 arrays); only touched under [lock]. */
    private var nv21Buffer: ByteArray? = null

    private fun <T> withSession(block: (Long) -> T): T = lock.withLock {
        check(handle != 0L) { "SailSession is closed" }
        block(handle)
    }

    private suspend fun <T> io(block: (Long) -> T): T = withContext(Dispatchers.IO) { withSession(block) }

    /** Add a PNG or JPEG file to the next question. */
    suspend fun addImage(path: String) = io { SailNative.sessionAddImageFile(it, path) }

    /** Add an encoded PNG or JPEG to the next question. */
    suspend fun addImage(encoded: ByteArray) = io { SailNative.sessionAddImageBytes(it, encoded, 0, encoded.size) }

    /** Add a raw frame; [stride] is the bytes from one row to the next (0: packed rows). */
    suspend fun addFrame(data: ByteArray, width: Int, height: Int, format: PixelFormat, stride: Int = 0) =
        io { SailNative.sessionAddFrame(it, data, width, height, stride, format.native) }

    /**
     * Add a CameraX frame (`YUV_420_888`, as ImageAnalysis delivers by default), as NV21. The image is read
     * before this returns; closing it stays the caller's job (CameraX sends no next frame until then).
     */
    suspend fun addFrame(image: ImageProxy) = io {
        val frame = image.toNv21(nv21Buffer)
        nv21Buffer = frame.data
        SailNative.sessionAddFrame(it, frame.data, frame.width, frame.height, 0, SailNative.PIXEL_NV21)
    }

    /** The system prompt of the next conversation (null: the model's); set it on a new or reset session. */
    suspend fun setSystem(system: String?) = io { SailNative.sessionSetSystem(it, system) }

    suspend fun setSampling(sampling: Sampling) = io {
        with(sampling) { SailNative.sessionSetSampling(it, temperature, topK, topP, minP, repetitionPenalty, seed) }
    }

    /** Forget the conversation and the pending images (sampling and system prompt stay). */
    suspend fun reset() = io { SailNative.sessionReset(it) }

    /** The last answer's timings. */
    suspend fun timings(): SailTimings = io {
        val t = SailNative.sessionTimings(it)
        SailTimings(t[0], t[1], t[2], t[3], t[4].toInt(), t[5].toInt(), t[6].toInt(), t[7].toInt(), t[8].toInt())
    }

    /**
     * Ask [question] about the images added since the last question and the conversation so far. The answer
     * comes as text pieces while it is generated (greedy unless [setSampling] said otherwise); [maxTokens] 0
     * is the library's default (512).
     *
     * The flow is cold: each collection asks once. Cancelling the collecting coroutine (leaving the screen,
     * `take(n)`, `first()`) cancels the native answer at once, prompt included, and leaves the session as it
     * was before the question. A [cancel] from elsewhere ends the flow with a [SailException] whose
     * `isCancelled` is true, so a cut-off answer is never taken for a complete one. Do not call this session
     * from inside `collect` (except [cancel]): the answer holds it until it ends.
     */
    fun ask(question: String, maxTokens: Int = 0): Flow<String> = callbackFlow {
        val running = AtomicBoolean(true)
        launch(Dispatchers.IO) {
            try {
                val status = withSession { h ->
                    // The collector may have gone while this waited for the session: a cancel sent before
                    // the native ask starts would be cleared by it, so do not start at all.
                    if (!isActive) return@withSession SailNative.CANCELLED
                    // Generating happens in this blocking call; each piece goes to the channel, and when the
                    // collector is slower than the model, trySendBlocking (the channel API for blocking code)
                    // holds the model back, so memory stays bounded.
                    SailNative.sessionAskCallback(h, question, maxTokens) { piece ->
                        // Nobody listens any more: stop by cancelling, not by returning false. A cancel puts
                        // the session back as before the question; a false would keep the cut-off answer in
                        // the conversation.
                        if (!(channel.trySendBlocking(piece).isSuccess && isActive)) SailNative.sessionCancel(h)
                        true
                    }
                }
                running.set(false)
                if (status == SailNative.CANCELLED && isActive) {
                    channel.close(SailException(SailNative.CANCELLED, "the answer was cancelled"))
                } else {
                    channel.close()
                }
            } catch (e: Exception) {
                running.set(false)
                channel.close(e)
            }
        }
        // The collector went away (or the flow ended): stop a native answer that is still running. The
        // producer scope then waits for the worker above, so the session is free when collect returns.
        // (Qualified: inside the producer, a bare cancel() would be CoroutineScope.cancel.)
        awaitClose { if (running.get()) this@SailSession.cancel() }
    }

    /** The whole answer as one string. */
    suspend fun answer(question: String, maxTokens: Int = 0): String =
        ask(question, maxTokens).fold(StringBuilder()) { text, piece -> text.append(piece) }.toString()

    /** Stop the running question (prompt or answer) from any thread; the session stays usable. */
    fun cancel() = synchronized(handleGuard) {
        if (handle != 0L) SailNative.sessionCancel(handle)
    }

    /** Cancel what runs, wait for it to stop, and free the session. Idempotent. */
    override fun close() {
        cancel()
        lock.withLock {
            synchronized(handleGuard) {
                SailNative.sessionFree(handle)
                handle = 0L
            }
        }
    }
}
