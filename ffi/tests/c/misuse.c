/*
 * Every function of the C API called with NULL and with garbage: each gives its documented status (or is a
 * no-op) and a message naming the argument, never a crash. Run under valgrind memcheck by CI.
 *
 *   misuse MODEL.gguf MMPROJ.gguf IMAGE
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sail_edge.h"

/* `call` returns `want` and the last error mentions `needle`. */
#define EXPECT(call, want, needle)                                                                    \
    do {                                                                                              \
        sail_status got_ = (call);                                                                    \
        CHECK(got_ == (want), "%s gave %s, expected %s", #call, sail_status_name(got_), #want);       \
        CHECK(strstr(sail_last_error(), (needle)) != NULL, "%s: the error does not say \"%s\"", #call, \
              (needle));                                                                              \
    } while (0)

static int32_t on_piece(const char *piece, void *user_data) {
    (void)piece;
    (*(int *)user_data)++;
    return 0;
}

/* Says stop at the first piece: no call may follow. */
static int32_t stop_at_once(const char *piece, void *user_data) {
    (void)piece;
    (*(int *)user_data)++;
    return 1;
}

/* A callback that calls back into its own session: refused as busy, never a deadlock or a free in use. */
static int reentry_failures = 0;
static int32_t reenter(const char *piece, void *user_data) {
    (void)piece;
    sail_session *s = user_data;
    const char *p;
    if (sail_session_next(s, &p) != SAIL_ERR_ARG || !strstr(sail_last_error(), "busy")) reentry_failures++;
    if (sail_session_reset(s) != SAIL_ERR_ARG) reentry_failures++;
    sail_session_free(s);
    if (!strstr(sail_last_error(), "busy")) reentry_failures++;
    sail_session_cancel(s); /* the one call that may overlap: stops the answer */
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: misuse MODEL.gguf MMPROJ.gguf IMAGE\n");
        return 2;
    }
    const char *model = argv[1], *mmproj = argv[2], *image = argv[3];
    sail_engine *engine = (sail_engine *)0x1;
    sail_session *session = (sail_session *)0x1;
    /* Addresses that were never handles: one in the heap, one made up. */
    char *heap = malloc(64);
    memset(heap, 0xAB, 64);
    sail_engine *fake_engine = (sail_engine *)heap;
    sail_session *fake_session = (sail_session *)(uintptr_t)0xdeadbeef0;

    /* --- parameters and opening --- */
    sail_engine_params_init(NULL); /* no-op */
    sail_sampling_params_init(NULL);
    sail_timings_init(NULL);
    sail_engine_params params;
    sail_engine_params_init(&params);
    EXPECT(sail_engine_open(NULL, &engine), SAIL_ERR_ARG, "params is NULL");
    CHECK(engine == NULL, "out is cleared on failure");
    EXPECT(sail_engine_open(&params, NULL), SAIL_ERR_ARG, "out");
    EXPECT(sail_engine_open(&params, &engine), SAIL_ERR_ARG, "model_path is NULL");
    params.model_path = "/nonexistent/model.gguf";
    EXPECT(sail_engine_open(&params, &engine), SAIL_ERR_IO, "/nonexistent/model.gguf");
    params.model_path = image; /* a PNG is not a GGUF */
    EXPECT(sail_engine_open(&params, &engine), SAIL_ERR_FORMAT, image);
    params.model_path = model;
    params.struct_size = 3;
    EXPECT(sail_engine_open(&params, &engine), SAIL_ERR_ARG, "struct_size is 3");
    sail_engine_params_init(&params);
    params.model_path = model;
    params.kv_type = (sail_kv_type)77;
    EXPECT(sail_engine_open(&params, &engine), SAIL_ERR_ARG, "kv_type is 77");
    params.kv_type = SAIL_KV_DEFAULT;
    params.n_threads = -4;
    EXPECT(sail_engine_open(&params, &engine), SAIL_ERR_ARG, "n_threads is -4");
    params.n_threads = 0;
    params.model_path = "\xff\xfe not utf-8";
    EXPECT(sail_engine_open(&params, &engine), SAIL_ERR_ARG, "not UTF-8");
    params.model_path = model;
    params.board = "no-such-board";
    EXPECT(sail_engine_open(&params, &engine), SAIL_ERR_ARG, "no-such-board");
    params.board = "/nonexistent/board.toml";
    EXPECT(sail_engine_open(&params, &engine), SAIL_ERR_IO, "/nonexistent/board.toml");
    params.board = image; /* not TOML */
    EXPECT(sail_engine_open(&params, &engine), SAIL_ERR_FORMAT, image);
    params.board = NULL;
    params.mmproj_path = mmproj;
    params.n_threads = 2;
    CHECK(sail_engine_open(&params, &engine) == SAIL_OK, "opening the model");

    /* --- engine and session handles --- */
    sail_engine_free(NULL);
    sail_engine_free(fake_engine);
    CHECK(strstr(sail_last_error(), "not a live engine") != NULL, "engine_free(garbage) is reported");
    CHECK(sail_engine_context_length(NULL) == 0 && sail_engine_context_length(fake_engine) == 0, "context_length");
    CHECK(sail_engine_context_length(engine) > 0, "context_length of a live engine");
    CHECK(sail_engine_threads(engine) == 2, "threads");
    EXPECT(sail_session_new(NULL, &session), SAIL_ERR_ARG, "engine is NULL");
    CHECK(session == NULL, "out is cleared on failure");
    EXPECT(sail_session_new(fake_engine, &session), SAIL_ERR_ARG, "not a live engine");
    EXPECT(sail_session_new((sail_engine *)fake_session, &session), SAIL_ERR_ARG, "not a live engine");
    EXPECT(sail_session_new(engine, NULL), SAIL_ERR_ARG, "out");
    CHECK(sail_session_new(engine, &session) == SAIL_OK, "session_new");
    /* A session is not an engine, nor the other way round. */
    sail_session *other = (sail_session *)0x1;
    EXPECT(sail_session_new((sail_engine *)session, &other), SAIL_ERR_ARG, "not a live engine");
    CHECK(other == NULL, "out is cleared on failure");
    EXPECT(sail_session_reset((sail_session *)engine), SAIL_ERR_ARG, "not a live session");

    /* --- every session function with a NULL and a made-up session --- */
    sail_session *bad[2] = {NULL, fake_session};
    const char *piece = "untouched";
    sail_sampling_params sampling;
    sail_sampling_params_init(&sampling);
    sail_timings timings;
    sail_timings_init(&timings);
    int count = 0;
    unsigned char pixels[64 * 64 * 4] = {0};
    for (int i = 0; i < 2; i++) {
        const char *why = i == 0 ? "session is NULL" : "not a live session";
        EXPECT(sail_session_add_image_file(bad[i], image), SAIL_ERR_ARG, why);
        EXPECT(sail_session_add_image_bytes(bad[i], pixels, sizeof pixels), SAIL_ERR_ARG, why);
        EXPECT(sail_session_add_frame(bad[i], pixels, 8, 8, 0, SAIL_PIXEL_RGB8), SAIL_ERR_ARG, why);
        EXPECT(sail_session_set_system(bad[i], "be brief"), SAIL_ERR_ARG, why);
        EXPECT(sail_session_ask(bad[i], "hi", 4), SAIL_ERR_ARG, why);
        EXPECT(sail_session_next(bad[i], &piece), SAIL_ERR_ARG, why);
        EXPECT(sail_session_ask_callback(bad[i], "hi", 4, on_piece, &count), SAIL_ERR_ARG, why);
        EXPECT(sail_session_reset(bad[i]), SAIL_ERR_ARG, why);
        EXPECT(sail_session_set_sampling(bad[i], &sampling), SAIL_ERR_ARG, why);
        EXPECT(sail_session_timings(bad[i], &timings), SAIL_ERR_ARG, why);
        CHECK(sail_session_context_used(bad[i]) == 0, "context_used");
        sail_session_cancel(bad[i]); /* no-op */
        sail_session_free(bad[i]);   /* no-op */
    }

    /* --- garbage arguments on a live session --- */
    EXPECT(sail_session_add_image_file(session, NULL), SAIL_ERR_ARG, "path is NULL");
    EXPECT(sail_session_add_image_file(session, "/nonexistent/photo.jpg"), SAIL_ERR_IO, "/nonexistent/photo.jpg");
    EXPECT(sail_session_add_image_file(session, model), SAIL_ERR_FORMAT, model);
    EXPECT(sail_session_add_image_bytes(session, NULL, 10), SAIL_ERR_ARG, "data is NULL");
    EXPECT(sail_session_add_image_bytes(session, pixels, 0), SAIL_ERR_ARG, "len is 0");
    EXPECT(sail_session_add_image_bytes(session, pixels, sizeof pixels), SAIL_ERR_FORMAT, "");
    EXPECT(sail_session_add_frame(session, NULL, 8, 8, 0, SAIL_PIXEL_RGB8), SAIL_ERR_ARG, "data is NULL");
    EXPECT(sail_session_add_frame(session, pixels, 8, 8, 0, (sail_pixel_format)99), SAIL_ERR_ARG, "format 99");
    EXPECT(sail_session_add_frame(session, pixels, 8, 8, 0, (sail_pixel_format)-1), SAIL_ERR_ARG, "format -1");
    EXPECT(sail_session_add_frame(session, pixels, 0, 8, 0, SAIL_PIXEL_RGB8), SAIL_ERR_ARG, "0x8");
    EXPECT(sail_session_add_frame(session, pixels, 8, 8, 5, SAIL_PIXEL_RGB8), SAIL_ERR_ARG, "stride 5");
    EXPECT(sail_session_add_frame(session, pixels, 4000000000u, 4000000000u, 0, SAIL_PIXEL_RGBA8), SAIL_ERR_ARG,
           "4000000000x4000000000");
    EXPECT(sail_session_add_frame(session, pixels, 7, 7, 0, SAIL_PIXEL_NV21), SAIL_ERR_ARG, "");
    EXPECT(sail_session_set_system(session, "\xc3\x28"), SAIL_ERR_ARG, "system is not UTF-8");
    EXPECT(sail_session_ask(session, NULL, 4), SAIL_ERR_ARG, "question is NULL");
    EXPECT(sail_session_ask(session, "", 4), SAIL_ERR_ARG, "");
    EXPECT(sail_session_ask(session, "hi", -3), SAIL_ERR_ARG, "max_tokens is -3");
    EXPECT(sail_session_next(session, NULL), SAIL_ERR_ARG, "piece");
    EXPECT(sail_session_next(session, &piece), SAIL_ERR_ARG, "no answer is running");
    CHECK(piece == NULL, "piece is cleared");
    EXPECT(sail_session_ask_callback(session, "hi", 4, NULL, NULL), SAIL_ERR_ARG, "on_piece is NULL");
    EXPECT(sail_session_ask_callback(session, "", 4, on_piece, &count), SAIL_ERR_ARG, "");
    sampling.struct_size = 1;
    EXPECT(sail_session_set_sampling(session, &sampling), SAIL_ERR_ARG, "struct_size is 1");
    sail_sampling_params_init(&sampling);
    sampling.temperature = -1.0f;
    EXPECT(sail_session_set_sampling(session, &sampling), SAIL_ERR_ARG, "temperature is -1");
    sail_sampling_params_init(&sampling);
    sampling.top_p = 0.0f;
    EXPECT(sail_session_set_sampling(session, &sampling), SAIL_ERR_ARG, "top_p is 0");
    sail_sampling_params_init(&sampling);
    sampling.top_k = -5;
    EXPECT(sail_session_set_sampling(session, &sampling), SAIL_ERR_ARG, "top_k is -5");
    CHECK(sail_session_set_sampling(session, NULL) == SAIL_OK, "NULL sampling is greedy");
    EXPECT(sail_session_timings(session, NULL), SAIL_ERR_ARG, "out");
    timings.struct_size = 0;
    EXPECT(sail_session_timings(session, &timings), SAIL_ERR_ARG, "struct_size is 0");
    sail_set_log_callback(NULL, (sail_log_level)42, NULL); /* clearing ignores the level */
    CHECK(strcmp(sail_status_name((sail_status)1234), "unknown status") == 0, "status_name");
    CHECK(strlen(sail_version()) > 0, "version");

    /* --- after all that, the session works, and its frames too --- */
    for (int i = 0; i < 64 * 64; i++) pixels[i * 4] = (unsigned char)i, pixels[i * 4 + 2] = (unsigned char)(i >> 4);
    CHECK(sail_session_add_frame(session, pixels, 64, 64, 64 * 4, SAIL_PIXEL_BGRA8) == SAIL_OK, "add_frame BGRA");
    CHECK(sail_session_ask_callback(session, "What is in the picture?", 6, on_piece, &count) == SAIL_DONE,
          "ask_callback");
    CHECK(count > 0, "the callback got pieces");
    sail_timings_init(&timings);
    CHECK(sail_session_timings(session, &timings) == SAIL_OK && timings.generated_tokens > 0 && timings.tiles > 0,
          "timings: %d tokens, %d tiles", timings.generated_tokens, timings.tiles);
    CHECK(sail_session_context_used(session) >= timings.prompt_tokens, "context_used");
    CHECK(sail_session_ask_callback(session, "Again?", 6, reenter, session) == SAIL_CANCELLED,
          "a callback that cancels its own answer");
    CHECK(reentry_failures == 0, "%d calls from inside the callback were not refused as busy", reentry_failures);
    /* An answer abandoned half-way by a new question, then by free: nothing leaks. */
    CHECK(sail_session_ask(session, "And now?", 6) == SAIL_OK, "ask");
    CHECK(sail_session_next(session, &piece) == SAIL_OK && piece != NULL, "next");
    CHECK(sail_session_ask(session, "Once more?", 6) == SAIL_OK, "ask while answering");
    /* While it runs, calls that would change what the next question sees are refused, not applied. */
    EXPECT(sail_session_add_image_file(session, image), SAIL_ERR_ARG, "an answer is running");
    EXPECT(sail_session_add_frame(session, pixels, 64, 64, 0, SAIL_PIXEL_BGRA8), SAIL_ERR_ARG, "an answer is running");
    EXPECT(sail_session_set_system(session, "terse"), SAIL_ERR_ARG, "an answer is running");
    EXPECT(sail_session_set_sampling(session, NULL), SAIL_ERR_ARG, "an answer is running");
    CHECK(sail_session_next(session, &piece) == SAIL_OK, "the answer still runs after the refusals");
    CHECK(sail_session_reset(session) == SAIL_OK, "reset ends it");
    EXPECT(sail_session_next(session, &piece), SAIL_ERR_ARG, "no answer is running");
    /* A callback that says stop gets no further call. */
    count = 0;
    CHECK(sail_session_ask_callback(session, "Stop at once?", 6, stop_at_once, &count) == SAIL_DONE, "stop");
    CHECK(count == 1, "the callback was called %d times after saying stop at the first", count);

    /* --- double frees and use after free --- */
    sail_session *freed = session;
    sail_session_free(session);
    sail_session_free(freed);
    CHECK(strstr(sail_last_error(), "not a live session") != NULL, "double free is reported");
    EXPECT(sail_session_ask(freed, "hi", 4), SAIL_ERR_ARG, "not a live session");
    /* A new session (likely in the freed one's memory) does not bring the old handle back. */
    sail_session *fresh = NULL;
    CHECK(sail_session_new(engine, &fresh) == SAIL_OK && fresh != freed, "a new session has a new handle");
    EXPECT(sail_session_reset(freed), SAIL_ERR_ARG, "not a live session");
    sail_session_free(fresh);
    sail_engine *freed_engine = engine;
    sail_engine_free(engine);
    sail_engine_free(freed_engine);
    CHECK(strstr(sail_last_error(), "not a live engine") != NULL, "double free is reported");
    EXPECT(sail_session_new(freed_engine, &session), SAIL_ERR_ARG, "not a live engine");

    free(heap);
    if (failures) {
        fprintf(stderr, "%d failures\n", (int)failures);
        return 1;
    }
    printf("misuse: all passed\n");
    return 0;
}
