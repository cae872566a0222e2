/*
 * sail_jni.c: the JNI shim between dev.sailedge.SailNative (Java) and the sail-edge C API (sail_edge.h).
 *
 * The same file is built by the Android library (CMakeLists.txt, NDK) and by CI against the host JVM
 * (scripts/ci/jni-test.sh), so what CI exercises is what an app loads.
 *
 * Rules this file keeps:
 * - Every failure becomes a dev.sailedge.SailException(status, sail_last_error()), thrown before returning;
 *   nothing else is called on the JNIEnv once an exception is pending.
 * - Strings cross as standard UTF-8 (converted here from and to UTF-16), not JNI's "modified UTF-8", which
 *   encodes characters outside the BMP (emoji) as surrogate halves that Rust's UTF-8 check rejects.
 * - Local references made in a loop (one string per answer piece) are deleted in the loop: a long answer must
 *   not overflow the local reference table.
 * - No GetPrimitiveArrayCritical: every call that reads an array (decoding a JPEG, converting and resizing a
 *   frame) runs for milliseconds to tens of milliseconds, and a critical region that long stalls the garbage
 *   collector of every thread. Get/ReleaseByteArrayElements (JNI_ABORT: nothing is written back) pins or
 *   copies instead.
 * - The methods are bound with RegisterNatives in JNI_OnLoad, so a signature that does not match
 *   SailNative.java fails when the library loads; only JNI_OnLoad/JNI_OnUnload need to be exported.
 */

#include <jni.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sail_edge.h"

#ifdef __ANDROID__
#include <android/log.h>
#endif

/* Looked up once in JNI_OnLoad, where FindClass sees the app's class loader (a native thread's FindClass
 * would only see the system's). */
static jclass g_exception_class;  /* global ref to dev.sailedge.SailException */
static jmethodID g_exception_init; /* SailException(int status, String message) */
static jmethodID g_on_piece;       /* boolean SailNative.PieceCallback.onPiece(String) */

/* ---------------------------------------------------------------------------------------------------------
 * Strings
 */

#define REPLACEMENT 0xFFFD

/* Decode one UTF-8 sequence at s[*i] (n bytes in all); malformed input gives U+FFFD and skips one byte. */
static uint32_t utf8_decode(const unsigned char *s, size_t n, size_t *i) {
    unsigned char c = s[*i];
    uint32_t cp, min;
    size_t len;
    if (c < 0x80) {
        *i += 1;
        return c;
    } else if ((c & 0xE0) == 0xC0) {
        cp = c & 0x1F, len = 2, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        cp = c & 0x0F, len = 3, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        cp = c & 0x07, len = 4, min = 0x10000;
    } else {
        *i += 1;
        return REPLACEMENT;
    }
    if (*i + len > n) {
        *i += 1;
        return REPLACEMENT;
    }
    for (size_t k = 1; k < len; k++) {
        if ((s[*i + k] & 0xC0) != 0x80) {
            *i += 1;
            return REPLACEMENT;
        }
        cp = (cp << 6) | (s[*i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        *i += 1;
        return REPLACEMENT;
    }
    *i += len;
    return cp;
}

/* A Java string from UTF-8 (NULL gives null). NULL with an OutOfMemoryError pending on failure. */
static jstring new_string_utf8(JNIEnv *env, const char *utf8) {
    if (utf8 == NULL) return NULL;
    size_t n = strlen(utf8);
    if (n == 0) return (*env)->NewStringUTF(env, "");
    /* Answer pieces are a few bytes: a stack buffer spares the allocator in the token loop. UTF-16 never
     * needs more units than UTF-8 has bytes. */
    jchar stack[256];
    jchar *buf = n <= sizeof stack / sizeof stack[0] ? stack : malloc(n * sizeof(jchar));
    if (buf == NULL) {
        jclass oom = (*env)->FindClass(env, "java/lang/OutOfMemoryError");
        if (oom != NULL) (*env)->ThrowNew(env, oom, "sail_jni: string of an answer");
        return NULL;
    }
    size_t units = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp = utf8_decode((const unsigned char *)utf8, n, &i);
        if (cp >= 0x10000) {
            cp -= 0x10000;
            buf[units++] = (jchar)(0xD800 | (cp >> 10));
            buf[units++] = (jchar)(0xDC00 | (cp & 0x3FF));
        } else {
            buf[units++] = (jchar)cp;
        }
    }
    jstring s = (*env)->NewString(env, buf, (jsize)units);
    if (buf != stack) free(buf);
    return s;
}

/* A Java string as a malloc'd UTF-8 C string in *out (NULL for a null string). Returns 0, or -1 with an
 * exception pending. Unpaired surrogates become U+FFFD; a U+0000 ends the C string there. */
static int utf8_from_jstring(JNIEnv *env, jstring s, char **out) {
    *out = NULL;
    if (s == NULL) return 0;
    jsize len = (*env)->GetStringLength(env, s);
    jchar *units = malloc(((size_t)len + 1) * sizeof(jchar));
    char *utf8 = malloc((size_t)len * 3 + 1); /* a unit is at most 3 bytes; a surrogate pair 4 for 2 */
    if (units == NULL || utf8 == NULL) {
        free(units);
        free(utf8);
        jclass oom = (*env)->FindClass(env, "java/lang/OutOfMemoryError");
        if (oom != NULL) (*env)->ThrowNew(env, oom, "sail_jni: string argument");
        return -1;
    }
    (*env)->GetStringRegion(env, s, 0, len, units);
    size_t o = 0;
    for (jsize i = 0; i < len; i++) {
        uint32_t cp = units[i];
        if (cp >= 0xD800 && cp <= 0xDBFF && i + 1 < len && units[i + 1] >= 0xDC00 && units[i + 1] <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (units[i + 1] - 0xDC00);
            i++;
        } else if (cp >= 0xD800 && cp <= 0xDFFF) {
            cp = REPLACEMENT;
        }
        if (cp < 0x80) {
            utf8[o++] = (char)cp;
        } else if (cp < 0x800) {
            utf8[o++] = (char)(0xC0 | (cp >> 6));
            utf8[o++] = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            utf8[o++] = (char)(0xE0 | (cp >> 12));
            utf8[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            utf8[o++] = (char)(0x80 | (cp & 0x3F));
        } else {
            utf8[o++] = (char)(0xF0 | (cp >> 18));
            utf8[o++] = (char)(0x80 | ((cp >> 12) & 0x3F));
            utf8[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            utf8[o++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    utf8[o] = '\0';
    free(units);
    *out = utf8;
    return 0;
}

/* ---------------------------------------------------------------------------------------------------------
 * Errors
 */

static void throw_sail(JNIEnv *env, int32_t status, const char *message) {
    jstring jmessage = new_string_utf8(env, message);
    if (jmessage == NULL) return; /* OutOfMemoryError pending */
    jobject e = (*env)->NewObject(env, g_exception_class, g_exception_init, (jint)status, jmessage);
    (*env)->DeleteLocalRef(env, jmessage);
    if (e == NULL) return;
    (*env)->Throw(env, (jthrowable)e);
    (*env)->DeleteLocalRef(env, e);
}

/* True (and a SailException pending) when status is a failure. Must run on the thread of the failed call:
 * sail_last_error() is per thread. */
static int failed(JNIEnv *env, int32_t status) {
    if (status >= 0) return 0;
    const char *message = sail_last_error();
    throw_sail(env, status, message != NULL && message[0] != '\0' ? message : sail_status_name(status));
    return 1;
}

static sail_engine *engine_of(jlong h) { return (sail_engine *)(intptr_t)h; }
static sail_session *session_of(jlong h) { return (sail_session *)(intptr_t)h; }

/* ---------------------------------------------------------------------------------------------------------
 * Library
 */

static jstring JNICALL version(JNIEnv *env, jclass cls) {
    (void)cls;
    return new_string_utf8(env, sail_version());
}

static jstring JNICALL status_name(JNIEnv *env, jclass cls, jint status) {
    (void)cls;
    return new_string_utf8(env, sail_status_name(status));
}

/* The log goes to the platform's log from C, whatever thread the runtime logs on: calling into Java would
 * mean attaching the runtime's worker threads to the VM. */
static void log_to_platform(sail_log_level level, const char *message, void *user_data) {
    (void)user_data;
#ifdef __ANDROID__
    static const int priority[] = {ANDROID_LOG_ERROR, ANDROID_LOG_ERROR, ANDROID_LOG_WARN, ANDROID_LOG_INFO,
                                   ANDROID_LOG_DEBUG, ANDROID_LOG_VERBOSE};
    int i = (int)level >= 1 && (int)level <= 5 ? (int)level : 0;
    __android_log_write(priority[i], "sail-edge", message);
#else
    static const char *const name[] = {"?", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"};
    int i = (int)level >= 1 && (int)level <= 5 ? (int)level : 0;
    fprintf(stderr, "sail-edge %s: %s\n", name[i], message);
#endif
}

static void JNICALL set_log_level(JNIEnv *env, jclass cls, jint max_level) {
    (void)env, (void)cls;
    if (max_level <= 0)
        sail_set_log_callback(NULL, SAIL_LOG_ERROR, NULL);
    else
        sail_set_log_callback(log_to_platform, (sail_log_level)(max_level > 5 ? 5 : max_level), NULL);
}

/* ---------------------------------------------------------------------------------------------------------
 * Engine
 */

static jlong JNICALL engine_open(JNIEnv *env, jclass cls, jstring model, jstring mmproj, jint n_threads,
                                 jint context_length, jint max_tiles, jstring board) {
    (void)cls;
    char *model_c = NULL, *mmproj_c = NULL, *board_c = NULL;
    jlong handle = 0;
    if (utf8_from_jstring(env, model, &model_c) || utf8_from_jstring(env, mmproj, &mmproj_c) ||
        utf8_from_jstring(env, board, &board_c))
        goto out;
    sail_engine_params params;
    sail_engine_params_init(&params); /* defaults for the fields this shim does not know */
    params.model_path = model_c;      /* NULL: the library reports it */
    params.mmproj_path = mmproj_c;
    params.n_threads = n_threads;
    params.context_length = context_length;
    params.max_tiles = max_tiles;
    params.board = board_c;
    sail_engine *engine = NULL;
    if (!failed(env, sail_engine_open(&params, &engine))) handle = (jlong)(intptr_t)engine;
out:
    free(model_c);
    free(mmproj_c);
    free(board_c);
    return handle;
}

static void JNICALL engine_free(JNIEnv *env, jclass cls, jlong engine) {
    (void)env, (void)cls;
    sail_engine_free(engine_of(engine));
}

/* ---------------------------------------------------------------------------------------------------------
 * Session
 */

static jlong JNICALL session_new(JNIEnv *env, jclass cls, jlong engine) {
    (void)cls;
    sail_session *session = NULL;
    if (failed(env, sail_session_new(engine_of(engine), &session))) return 0;
    return (jlong)(intptr_t)session;
}

static void JNICALL session_free(JNIEnv *env, jclass cls, jlong session) {
    (void)env, (void)cls;
    sail_session_free(session_of(session));
}

static void JNICALL session_add_image_file(JNIEnv *env, jclass cls, jlong session, jstring path) {
    (void)cls;
    char *path_c;
    if (utf8_from_jstring(env, path, &path_c)) return;
    failed(env, sail_session_add_image_file(session_of(session), path_c));
    free(path_c);
}

static void JNICALL session_add_image_bytes(JNIEnv *env, jclass cls, jlong session, jbyteArray data,
                                            jint offset, jint length) {
    (void)cls;
    if (data == NULL) { /* the library names the NULL argument */
        failed(env, sail_session_add_image_bytes(session_of(session), NULL, 0));
        return;
    }
    jsize size = (*env)->GetArrayLength(env, data);
    if (offset < 0 || length < 0 || offset > size || length > size - offset) {
        char message[160];
        snprintf(message, sizeof message, "image bytes: offset %d and length %d do not fit an array of %d",
                 (int)offset, (int)length, (int)size);
        throw_sail(env, SAIL_ERR_ARG, message);
        return;
    }
    jbyte *bytes = (*env)->GetByteArrayElements(env, data, NULL);
    if (bytes == NULL) return; /* OutOfMemoryError pending */
    sail_status status =
        sail_session_add_image_bytes(session_of(session), (const uint8_t *)bytes + offset, (size_t)length);
    (*env)->ReleaseByteArrayElements(env, data, bytes, JNI_ABORT);
    failed(env, status);
}

/* Bytes a frame needs, as the runtime counts them (runtime/src/engine/frame.rs), so that C never reads past
 * the Java array: sail_session_add_frame takes no length. 0 for a format this shim does not know. */
static uint64_t frame_bytes(int32_t format, uint64_t width, uint64_t height, uint64_t stride) {
    uint64_t min_stride, half_h = (height + 1) / 2, half_s;
    switch (format) {
    case SAIL_PIXEL_RGB8: min_stride = 3 * width; break;
    case SAIL_PIXEL_RGBA8:
    case SAIL_PIXEL_BGRA8: min_stride = 4 * width; break;
    case SAIL_PIXEL_YUYV: min_stride = 2 * width; break;
    case SAIL_PIXEL_NV12:
    case SAIL_PIXEL_NV21:
    case SAIL_PIXEL_I420:
    case SAIL_PIXEL_I422:
    case SAIL_PIXEL_I444:
    case SAIL_PIXEL_GREY: min_stride = width; break;
    default: return 0;
    }
    /* A short stride is the library's error to report; counting with the row size keeps the check sound. */
    if (stride < min_stride) stride = min_stride;
    half_s = (stride + 1) / 2;
    switch (format) {
    case SAIL_PIXEL_NV12:
    case SAIL_PIXEL_NV21: return stride * (height + height / 2);
    case SAIL_PIXEL_I420: return stride * height + 2 * half_h * half_s;
    case SAIL_PIXEL_I422: return stride * height + 2 * height * half_s;
    case SAIL_PIXEL_I444: return 3 * stride * height;
    default: return stride * height;
    }
}

static void JNICALL session_add_frame(JNIEnv *env, jclass cls, jlong session, jbyteArray data, jint width,
                                      jint height, jint stride, jint format) {
    (void)cls;
    char message[200];
    if (width < 0 || height < 0 || stride < 0) {
        snprintf(message, sizeof message, "frame of %dx%d, stride %d: sizes cannot be negative", (int)width,
                 (int)height, (int)stride);
        throw_sail(env, SAIL_ERR_ARG, message);
        return;
    }
    if (data == NULL) {
        failed(env, sail_session_add_frame(session_of(session), NULL, (uint32_t)width, (uint32_t)height,
                                           (uint32_t)stride, (sail_pixel_format)format));
        return;
    }
    uint64_t needed = frame_bytes(format, (uint64_t)width, (uint64_t)height, (uint64_t)stride);
    jsize size = (*env)->GetArrayLength(env, data);
    if (needed == 0 && width > 0 && height > 0) {
        snprintf(message, sizeof message, "frame: unknown pixel format %d", (int)format);
        throw_sail(env, SAIL_ERR_ARG, message);
        return;
    }
    if ((uint64_t)size < needed) {
        snprintf(message, sizeof message, "frame of %dx%d, stride %d, format %d: %d bytes given, %llu needed",
                 (int)width, (int)height, (int)stride, (int)format, (int)size, (unsigned long long)needed);
        throw_sail(env, SAIL_ERR_ARG, message);
        return;
    }
    jbyte *bytes = (*env)->GetByteArrayElements(env, data, NULL);
    if (bytes == NULL) return; /* OutOfMemoryError pending */
    sail_status status = sail_session_add_frame(session_of(session), (const uint8_t *)bytes, (uint32_t)width,
                                                (uint32_t)height, (uint32_t)stride, (sail_pixel_format)format);
    (*env)->ReleaseByteArrayElements(env, data, bytes, JNI_ABORT);
    failed(env, status);
}

static void JNICALL session_set_system(JNIEnv *env, jclass cls, jlong session, jstring system) {
    (void)cls;
    char *system_c;
    if (utf8_from_jstring(env, system, &system_c)) return;
    failed(env, sail_session_set_system(session_of(session), system_c));
    free(system_c);
}

static void JNICALL session_set_sampling(JNIEnv *env, jclass cls, jlong session, jfloat temperature,
                                         jint top_k, jfloat top_p, jfloat min_p, jfloat repetition_penalty,
                                         jlong seed) {
    (void)cls;
    sail_sampling_params params;
    sail_sampling_params_init(&params);
    params.temperature = temperature;
    params.top_k = top_k;
    params.top_p = top_p;
    params.min_p = min_p;
    params.repetition_penalty = repetition_penalty;
    params.seed = (uint64_t)seed;
    failed(env, sail_session_set_sampling(session_of(session), &params));
}

static void JNICALL session_ask(JNIEnv *env, jclass cls, jlong session, jstring question, jint max_tokens) {
    (void)cls;
    char *question_c;
    if (utf8_from_jstring(env, question, &question_c)) return;
    failed(env, sail_session_ask(session_of(session), question_c, max_tokens));
    free(question_c);
}

static jstring JNICALL session_next(JNIEnv *env, jclass cls, jlong session) {
    (void)cls;
    const char *piece = NULL;
    sail_status status = sail_session_next(session_of(session), &piece);
    if (status == SAIL_OK) return new_string_utf8(env, piece);
    if (status == SAIL_CANCELLED) throw_sail(env, SAIL_CANCELLED, "the answer was cancelled");
    else failed(env, status); /* SAIL_DONE: no exception, null */
    return NULL;
}

struct piece_sink {
    JNIEnv *env;     /* the calling thread's: the library calls back on the thread that asked */
    jobject callback;
};

static int32_t on_piece(const char *piece, void *user_data) {
    struct piece_sink *sink = user_data;
    JNIEnv *env = sink->env;
    /* No JNI call with an exception pending (the library calls no more after a stop, but be sure). */
    if ((*env)->ExceptionCheck(env)) return 1;
    jstring s = new_string_utf8(env, piece);
    if (s == NULL) return 1; /* OutOfMemoryError pending: stop */
    jboolean go_on = (*env)->CallBooleanMethod(env, sink->callback, g_on_piece, s);
    (*env)->DeleteLocalRef(env, s); /* one per piece: do not let a long answer fill the local ref table */
    if ((*env)->ExceptionCheck(env)) return 1; /* the callback threw: stop, and let it propagate */
    return go_on ? 0 : 1;
}

static jint JNICALL session_ask_callback(JNIEnv *env, jclass cls, jlong session, jstring question,
                                         jint max_tokens, jobject callback) {
    (void)cls;
    if (callback == NULL) {
        throw_sail(env, SAIL_ERR_ARG, "the piece callback is null");
        return SAIL_ERR_ARG;
    }
    char *question_c;
    if (utf8_from_jstring(env, question, &question_c)) return SAIL_ERR_INTERNAL;
    struct piece_sink sink = {env, callback};
    sail_status status = sail_session_ask_callback(session_of(session), question_c, max_tokens, on_piece, &sink);
    free(question_c);
    if ((*env)->ExceptionCheck(env)) return status; /* the callback's exception wins */
    failed(env, status);
    return status;
}

static void JNICALL session_cancel(JNIEnv *env, jclass cls, jlong session) {
    (void)env, (void)cls;
    sail_session_cancel(session_of(session));
}

static void JNICALL session_reset(JNIEnv *env, jclass cls, jlong session) {
    (void)cls;
    failed(env, sail_session_reset(session_of(session)));
}

static jdoubleArray JNICALL session_timings(JNIEnv *env, jclass cls, jlong session) {
    (void)cls;
    sail_timings t;
    sail_timings_init(&t);
    if (failed(env, sail_session_timings(session_of(session), &t))) return NULL;
    jdouble values[9] = {t.preprocess_ms, t.encode_ms,     t.prefill_ms,       t.decode_ms,       t.tiles,
                         t.tiles_cached,  t.prompt_tokens, t.prefilled_tokens, t.generated_tokens};
    jdoubleArray array = (*env)->NewDoubleArray(env, 9);
    if (array != NULL) (*env)->SetDoubleArrayRegion(env, array, 0, 9, values);
    return array;
}

/* ---------------------------------------------------------------------------------------------------------
 * Binding
 */

#define STR "Ljava/lang/String;"
static const JNINativeMethod methods[] = {
    {"version", "()" STR, (void *)version},
    {"statusName", "(I)" STR, (void *)status_name},
    {"setLogLevel", "(I)V", (void *)set_log_level},
    {"engineOpen", "(" STR STR "III" STR ")J", (void *)engine_open},
    {"engineFree", "(J)V", (void *)engine_free},
    {"sessionNew", "(J)J", (void *)session_new},
    {"sessionFree", "(J)V", (void *)session_free},
    {"sessionAddImageFile", "(J" STR ")V", (void *)session_add_image_file},
    {"sessionAddImageBytes", "(J[BII)V", (void *)session_add_image_bytes},
    {"sessionAddFrame", "(J[BIIII)V", (void *)session_add_frame},
    {"sessionSetSystem", "(J" STR ")V", (void *)session_set_system},
    {"sessionSetSampling", "(JFIFFFJ)V", (void *)session_set_sampling},
    {"sessionAsk", "(J" STR "I)V", (void *)session_ask},
    {"sessionNext", "(J)" STR, (void *)session_next},
    {"sessionAskCallback", "(J" STR "ILdev/sailedge/SailNative$PieceCallback;)I", (void *)session_ask_callback},
    {"sessionCancel", "(J)V", (void *)session_cancel},
    {"sessionReset", "(J)V", (void *)session_reset},
    {"sessionTimings", "(J)[D", (void *)session_timings},
};

JNIEXPORT jint JNICALL JNI_OnLoad(JavaVM *vm, void *reserved) {
    (void)reserved;
    JNIEnv *env;
    if ((*vm)->GetEnv(vm, (void **)&env, JNI_VERSION_1_6) != JNI_OK) return JNI_ERR;

    jclass exception = (*env)->FindClass(env, "dev/sailedge/SailException");
    if (exception == NULL) return JNI_ERR;
    g_exception_class = (*env)->NewGlobalRef(env, exception);
    (*env)->DeleteLocalRef(env, exception);
    if (g_exception_class == NULL) return JNI_ERR;
    g_exception_init = (*env)->GetMethodID(env, g_exception_class, "<init>", "(I" STR ")V");
    if (g_exception_init == NULL) return JNI_ERR;

    jclass callback = (*env)->FindClass(env, "dev/sailedge/SailNative$PieceCallback");
    if (callback == NULL) return JNI_ERR;
    g_on_piece = (*env)->GetMethodID(env, callback, "onPiece", "(" STR ")Z");
    (*env)->DeleteLocalRef(env, callback);
    if (g_on_piece == NULL) return JNI_ERR;

    jclass native = (*env)->FindClass(env, "dev/sailedge/SailNative");
    if (native == NULL) return JNI_ERR;
    jint registered = (*env)->RegisterNatives(env, native, methods, sizeof methods / sizeof methods[0]);
    (*env)->DeleteLocalRef(env, native);
    return registered == JNI_OK ? JNI_VERSION_1_6 : JNI_ERR;
}

JNIEXPORT void JNICALL JNI_OnUnload(JavaVM *vm, void *reserved) {
    (void)reserved;
    JNIEnv *env;
    if ((*vm)->GetEnv(vm, (void **)&env, JNI_VERSION_1_6) != JNI_OK) return;
    (*env)->DeleteGlobalRef(env, g_exception_class);
    g_exception_class = NULL;
}
