package dev.sailedge

import java.io.Closeable
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.withContext

/**
 * A loaded SAIL-VL2 model (`sail_engine`): open one per app and share it; it is thread-safe, and every
 * [SailSession] made from it shares its weights, worker threads and tile-feature cache.
 *
 * Sessions hold a reference to the engine inside the library, so closing the engine while sessions are open
 * is safe: the model is unloaded when the last of them is closed.
 */
class SailEngine private constructor(private var handle: Long) : Closeable {

    /** How to open the engine. 0 and null mean the library's default. */
    data class Config(
        /** The language model GGUF, a file path (copy it out of the APK's assets first: it is mmapped). */
        val modelPath: String,
        /** The vision GGUF; null: the `mmproj-*.gguf` beside the model, if there is one. */
        val mmprojPath: String? = null,
        /** Worker threads; 0: the number of physical cores. Phones do best on their big cores only (2–4). */
        val threads: Int = 0,
        /** Most positions a session may hold; 0: the model's. A smaller context is less KV memory. */
        val contextLength: Int = 0,
        /** Tiles per still image; 0: the mmproj file's. Fewer tiles answer sooner. */
        val maxTiles: Int = 0,
        /** A board profile name, "auto", or null for none (profiles describe single-board computers). */
        val board: String? = null,
    )

    /** A new conversation on this engine. */
    fun newSession(): SailSession = synchronized(this) {
        check(handle != 0L) { "SailEngine is closed" }
        SailSession(SailNative.sessionNew(handle))
    }

    /** Let go of the engine; open sessions keep the model until they are closed. Idempotent. */
    override fun close() = synchronized(this) {
        SailNative.engineFree(handle)
        handle = 0L
    }

    companion object {
        /**
         * Load a model. Takes a while (the files are mapped and the weights laid out for the CPU's kernels), so
         * it runs on [Dispatchers.IO].
         *
         * @throws SailException naming the file when a model cannot be read or is not a SAIL-VL2 GGUF
         */
        suspend fun open(config: Config): SailEngine = withContext(Dispatchers.IO) {
            SailEngine(
                SailNative.engineOpen(
                    config.modelPath, config.mmprojPath, config.threads, config.contextLength, config.maxTiles,
                    config.board,
                )
            )
        }

        /** The native library's version. */
        val version: String get() = SailNative.version()

        /** Send the library's log to logcat (tag `sail-edge`) up to [maxLevel] (`SailNative.LOG_*`). */
        fun setLogLevel(maxLevel: Int) = SailNative.setLogLevel(maxLevel)
    }
}
