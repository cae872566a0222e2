package dev.sailedge;

/**
 * The JNI layer over the sail-edge C API ({@code ffi/include/sail_edge.h}): every {@code native} method of
 * the library is declared here, and nowhere else.
 *
 * <p>It is Java, not Kotlin, so that the Android library and the host-JVM test in CI
 * ({@code examples/android/jvm-test}, run by {@code scripts/ci/jni-test.sh}) bind to exactly the same methods
 * of the same class: what CI exercises is what an app loads. Apps should use {@link SailEngine} and
 * {@link SailSession} (Kotlin); this class is public for Java callers and tests.
 *
 * <p>Handles are the C pointers as {@code long} (0 is NULL). The C library checks every handle against its
 * registry of live ones, so a 0, freed or made-up handle is a {@link SailException} with status
 * {@link #ERR_ARG}, not a crash. Freeing a handle while another thread is inside a call on it is still the
 * caller's error, as in C. A session is used by one thread at a time; only {@link #sessionCancel} may be
 * called from another thread while it works.
 *
 * <p>Failures throw {@link SailException} carrying the status and {@code sail_last_error()}. Strings cross
 * as real UTF-8 both ways (not JNI's "modified UTF-8"), so emoji in questions and answers survive.
 *
 * <p>The methods are bound with {@code RegisterNatives} when the library loads, so a signature that does
 * not match the C shim fails at {@code System.loadLibrary}, not at the first call.
 */
public final class SailNative {
    private SailNative() {}

    static {
        // libsail_jni.so: the shim (src/main/cpp/sail_jni.c). It needs libsail_edge.so beside it (cargo ndk)
        // or has the Rust staticlib linked in; Android resolves the dependency from the APK's lib folder.
        System.loadLibrary("sail_jni");
    }

    // sail_status: what a call did. Negative values are failures.
    public static final int OK = 0;
    public static final int DONE = 1;
    public static final int CANCELLED = 2;
    public static final int ERR_ARG = -1;
    public static final int ERR_IO = -2;
    public static final int ERR_FORMAT = -3;
    public static final int ERR_CONTEXT_FULL = -4;
    public static final int ERR_INTERNAL = -100;

    // sail_pixel_format: how the bytes of a frame are laid out (YUV is BT.601 limited range).
    public static final int PIXEL_RGB8 = 0;
    public static final int PIXEL_RGBA8 = 1;
    public static final int PIXEL_BGRA8 = 2;
    public static final int PIXEL_NV12 = 3;
    public static final int PIXEL_NV21 = 4;
    public static final int PIXEL_YUYV = 5;
    public static final int PIXEL_I420 = 6;
    public static final int PIXEL_I422 = 7;
    public static final int PIXEL_I444 = 8;
    public static final int PIXEL_GREY = 9;

    // sail_log_level.
    public static final int LOG_OFF = 0;
    public static final int LOG_ERROR = 1;
    public static final int LOG_WARN = 2;
    public static final int LOG_INFO = 3;
    public static final int LOG_DEBUG = 4;
    public static final int LOG_TRACE = 5;

    /**
     * Receives the pieces of an answer in {@link #sessionAskCallback}, on the thread that asked. The session
     * is busy meanwhile: only {@link #sessionCancel} may be called on it from here.
     */
    public interface PieceCallback {
        /** @return true to go on, false to stop there (the answer so far stays in the conversation). */
        boolean onPiece(String piece);
    }

    /** {@code sail_version()}: the library's version. */
    public static native String version();

    /** {@code sail_status_name()}: {@code "SAIL_ERR_IO"} for -2. */
    public static native String statusName(int status);

    /**
     * Send the library's log to logcat (tag {@code sail-edge}) on Android, to stderr elsewhere, up to
     * {@code maxLevel} ({@link #LOG_OFF} turns it off). Logging goes through C only, so that it works from
     * the runtime's own threads without attaching them to the JVM.
     */
    public static native void setLogLevel(int maxLevel);

    /**
     * {@code sail_engine_open}: load a model. Slow (maps the files, builds the kernels' layouts): call it off
     * the main thread. 0 means the default for the numbers and none for {@code mmprojPath} and {@code board}.
     *
     * @return the engine handle, freed with {@link #engineFree}
     */
    public static native long engineOpen(
            String modelPath, String mmprojPath, int nThreads, int contextLength, int maxTiles, String board);

    /** {@code sail_engine_free}. 0 is a no-op. Sessions hold the engine, so it may be freed before them. */
    public static native void engineFree(long engine);

    /** {@code sail_session_new}: a conversation on the engine, freed with {@link #sessionFree}. */
    public static native long sessionNew(long engine);

    /** {@code sail_session_free}. 0 is a no-op. */
    public static native void sessionFree(long session);

    /** {@code sail_session_add_image_file}: an image for the next question. */
    public static native void sessionAddImageFile(long session, String path);

    /** {@code sail_session_add_image_bytes}: an encoded JPEG or PNG, {@code length} bytes at {@code offset}. */
    public static native void sessionAddImageBytes(long session, byte[] data, int offset, int length);

    /**
     * {@code sail_session_add_frame}: a raw frame ({@code PIXEL_*}). {@code stride} is the bytes from one row
     * to the next (0: packed rows). The shim checks that {@code data} holds the whole frame before C reads it.
     */
    public static native void sessionAddFrame(
            long session, byte[] data, int width, int height, int stride, int format);

    /** {@code sail_session_set_system}: null restores the default system prompt. */
    public static native void sessionSetSystem(long session, String system);

    /** {@code sail_session_set_sampling}: temperature 0 is greedy (the default). */
    public static native void sessionSetSampling(long session, float temperature, int topK, float topP,
            float minP, float repetitionPenalty, long seed);

    /**
     * {@code sail_session_ask}: compute the prompt (the slow part with images) and start an answer; pull its
     * pieces with {@link #sessionNext}. A cancel during the prompt shows as {@link #sessionNext}'s
     * {@link #CANCELLED}. A previous answer still running is ended where it is.
     */
    public static native void sessionAsk(long session, String question, int maxTokens);

    /**
     * {@code sail_session_next}: the answer's next piece, or null when it is complete.
     *
     * @throws SailException with status {@link #CANCELLED} when {@link #sessionCancel} stopped it, so that a
     *     cancelled answer is never mistaken for a complete one
     */
    public static native String sessionNext(long session);

    /**
     * {@code sail_session_ask_callback}: ask and deliver the pieces to {@code onPiece} on this thread. An
     * exception thrown by the callback stops the answer and is rethrown from here.
     *
     * @return {@link #DONE} (complete, or stopped by the callback's false: the answer so far stays in the
     *     conversation), or {@link #CANCELLED} ({@link #sessionCancel}: the session is as before the question)
     */
    public static native int sessionAskCallback(
            long session, String question, int maxTokens, PieceCallback onPiece);

    /**
     * {@code sail_session_cancel}: stop the running question (prompt or answer) as soon as possible, from any
     * thread; the session is left as before the question. A cancel that comes before {@link #sessionAsk}
     * is cleared by it.
     */
    public static native void sessionCancel(long session);

    /** {@code sail_session_reset}: forget the conversation and the pending images. */
    public static native void sessionReset(long session);

    /**
     * {@code sail_session_timings} of the last answer, as {@code {preprocessMs, encodeMs, prefillMs, decodeMs,
     * tiles, tilesCached, promptTokens, prefilledTokens, generatedTokens}} (the counts as doubles).
     */
    public static native double[] sessionTimings(long session);
}
