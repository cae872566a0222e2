/*
 * Threads through the C API: 4 sessions on one engine from 4 pthreads give each the answer one session gives
 * alone, and sail_session_cancel from a second thread ends an answer with SAIL_CANCELLED at once, the session
 * staying usable (its next answer is the uncancelled one).
 *
 *   threads MODEL.gguf MMPROJ.gguf IMAGE_A IMAGE_B
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "sail_edge.h"

#define QUESTION "What is in the picture?"
#define MAX_TOKENS 12
#define ANSWER_CAP 4096

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Pull a whole answer into `out`; returns the final status. */
static sail_status pull(sail_session *s, char *out) {
    out[0] = '\0';
    const char *piece;
    sail_status st;
    while ((st = sail_session_next(s, &piece)) == SAIL_OK) strncat(out, piece, ANSWER_CAP - strlen(out) - 1);
    return st;
}

static int32_t collect(const char *piece, void *user_data) {
    char *out = user_data;
    strncat(out, piece, ANSWER_CAP - strlen(out) - 1);
    return 0;
}

/* One question about `image` on a new session; pull or callback form. */
static void answer(sail_engine *engine, const char *image, int use_callback, char *out) {
    sail_session *s = NULL;
    out[0] = '\0';
    CHECK(sail_session_new(engine, &s) == SAIL_OK, "session_new");
    CHECK(sail_session_add_image_file(s, image) == SAIL_OK, "add_image_file %s", image);
    if (use_callback) {
        CHECK(sail_session_ask_callback(s, QUESTION, MAX_TOKENS, collect, out) == SAIL_DONE, "ask_callback");
    } else {
        CHECK(sail_session_ask(s, QUESTION, MAX_TOKENS) == SAIL_OK, "ask");
        CHECK(pull(s, out) == SAIL_DONE, "pull");
    }
    sail_session_free(s);
}

struct job {
    sail_engine *engine;
    const char *image;
    int use_callback;
    char text[ANSWER_CAP];
};

static void *run_job(void *arg) {
    struct job *job = arg;
    answer(job->engine, job->image, job->use_callback, job->text);
    return NULL;
}

/* The canceller: waits for the first piece, cancels, says when. */
struct canceller {
    sail_session *session;
    atomic_int first_piece;
    atomic_int cancelled;
    double cancelled_at;
};

static void *cancel_after_first_piece(void *arg) {
    struct canceller *c = arg;
    while (!atomic_load(&c->first_piece)) {
        struct timespec pause = {0, 100000};
        nanosleep(&pause, NULL);
    }
    sail_session_cancel(c->session);
    c->cancelled_at = now_ms();
    atomic_store(&c->cancelled, 1);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: threads MODEL.gguf MMPROJ.gguf IMAGE_A IMAGE_B\n");
        return 2;
    }
    sail_engine_params params;
    sail_engine_params_init(&params);
    params.model_path = argv[1];
    params.mmproj_path = argv[2];
    params.n_threads = 2;
    sail_engine *engine = NULL;
    if (sail_engine_open(&params, &engine) != SAIL_OK) {
        fprintf(stderr, "opening %s: %s\n", argv[1], sail_last_error());
        return 1;
    }
    const char *images[2] = {argv[3], argv[4]};

    /* One session at a time: the answers the threads must give. */
    static char reference[2][ANSWER_CAP];
    for (int i = 0; i < 2; i++) {
        answer(engine, images[i], 0, reference[i]);
        CHECK(strlen(reference[i]) > 0, "empty reference answer for %s", images[i]);
        printf("reference %d: %s\n", i, reference[i]);
    }

    /* 4 sessions on 4 threads at once, two per image, pull and callback forms. */
    static struct job jobs[4];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (struct job){.engine = engine, .image = images[i % 2], .use_callback = i / 2};
        CHECK(pthread_create(&threads[i], NULL, run_job, &jobs[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < 4; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < 4; i++) {
        CHECK(strcmp(jobs[i].text, reference[i % 2]) == 0, "thread %d answered \"%s\", alone it was \"%s\"", i,
              jobs[i].text, reference[i % 2]);
    }
    printf("4 threads: each answer equals the single-threaded one\n");

    /* Cancel from a second thread while the answer is being generated. */
    sail_session *s = NULL;
    CHECK(sail_session_new(engine, &s) == SAIL_OK, "session_new");
    CHECK(sail_session_add_image_file(s, images[0]) == SAIL_OK, "add_image_file");
    struct canceller c = {.session = s};
    pthread_t canceller;
    /* The default budget (512 tokens): far longer than the canceller needs to act. */
    CHECK(sail_session_ask(s, QUESTION, 0) == SAIL_OK, "ask");
    CHECK(pthread_create(&canceller, NULL, cancel_after_first_piece, &c) == 0, "pthread_create");
    const char *piece;
    sail_status st;
    int pieces_after_cancel = 0;
    while ((st = sail_session_next(s, &piece)) == SAIL_OK) {
        atomic_store(&c.first_piece, 1);
        if (atomic_load(&c.cancelled)) pieces_after_cancel++;
    }
    double ended_at = now_ms();
    pthread_join(canceller, NULL);
    CHECK(st == SAIL_CANCELLED, "the cancelled answer ended with %s", sail_status_name(st));
    /* The flag is read before each token: at most the token being computed when it was set comes after. */
    CHECK(pieces_after_cancel <= 1, "%d pieces came after sail_session_cancel returned", pieces_after_cancel);
    CHECK(sail_session_next(s, &piece) == SAIL_CANCELLED && piece == NULL, "next after the end repeats the status");
    printf("cancelled from a second thread: %d pieces after the cancel, ended %.1f ms after it\n",
           pieces_after_cancel, ended_at - c.cancelled_at);

    /* The session is as before the question (its image still pending): the same question answers as alone. */
    static char again[ANSWER_CAP];
    CHECK(sail_session_ask(s, QUESTION, MAX_TOKENS) == SAIL_OK, "ask after cancel");
    CHECK(pull(s, again) == SAIL_DONE, "pull after cancel");
    CHECK(strcmp(again, reference[0]) == 0, "after the cancel: \"%s\", expected \"%s\"", again, reference[0]);

    /* A cancel before the question is cleared by it. */
    sail_session_cancel(s);
    CHECK(sail_session_reset(s) == SAIL_OK, "reset");
    CHECK(sail_session_add_image_file(s, images[0]) == SAIL_OK, "add_image_file");
    CHECK(sail_session_ask(s, QUESTION, MAX_TOKENS) == SAIL_OK, "ask after an early cancel");
    CHECK(pull(s, again) == SAIL_DONE && strcmp(again, reference[0]) == 0, "answer after an early cancel");

    sail_session_free(s);
    sail_engine_free(engine);
    if (failures) {
        fprintf(stderr, "%d failures\n", (int)failures);
        return 1;
    }
    printf("threads: all passed\n");
    return 0;
}
