/*
 * describe: what `sail-edge describe` does, through the C API. Prints the answer as it comes, then a newline.
 *
 *   cc examples/c/describe.c -Iffi/include target/release/libsail_edge.a -lpthread -ldl -lm -o describe
 *   ./describe -m model.gguf [--mmproj mmproj.gguf] --image photo.jpg [--image more.png] [-p QUESTION] [-n N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sail_edge.h"

static int fail(const char *what, sail_status status) {
    fprintf(stderr, "describe: %s: %s (%s)\n", what, sail_last_error(), sail_status_name(status));
    return 1;
}

static int usage(void) {
    fprintf(stderr, "usage: describe -m MODEL.gguf [--mmproj F] --image PATH... [-p QUESTION] [-n N] [-t THREADS]\n");
    return 2;
}

int main(int argc, char **argv) {
    sail_engine_params params;
    sail_engine_params_init(&params);
    const char *images[64];
    int n_images = 0;
    const char *question = "Describe this image.";
    int max_tokens = 512;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (i + 1 >= argc) return usage();
        const char *value = argv[++i];
        if (!strcmp(arg, "-m")) params.model_path = value;
        else if (!strcmp(arg, "--mmproj")) params.mmproj_path = value;
        else if (!strcmp(arg, "--image") && n_images < 64) images[n_images++] = value;
        else if (!strcmp(arg, "-p")) question = value;
        else if (!strcmp(arg, "-n")) max_tokens = atoi(value);
        else if (!strcmp(arg, "-t")) params.n_threads = atoi(value);
        else return usage();
    }
    if (!params.model_path) return usage();

    sail_engine *engine = NULL;
    sail_status status = sail_engine_open(&params, &engine);
    if (status != SAIL_OK) return fail("opening the model", status);
    sail_session *session = NULL;
    status = sail_session_new(engine, &session);
    if (status != SAIL_OK) return fail("starting a session", status);
    /* The session holds the engine; the caller's reference can go now. */
    sail_engine_free(engine);

    int code = 0;
    for (int i = 0; i < n_images && code == 0; i++) {
        status = sail_session_add_image_file(session, images[i]);
        if (status != SAIL_OK) code = fail(images[i], status);
    }
    if (code == 0) {
        status = sail_session_ask(session, question, max_tokens);
        if (status != SAIL_OK) code = fail("asking", status);
    }
    const char *piece = NULL;
    while (code == 0 && (status = sail_session_next(session, &piece)) == SAIL_OK) {
        fputs(piece, stdout);
        fflush(stdout);
    }
    if (code == 0 && status != SAIL_DONE) code = fail("answering", status);
    if (code == 0) putchar('\n');
    sail_session_free(session);
    return code;
}
