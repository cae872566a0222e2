/* A qemu-user TCG plugin that counts the guest instructions a program retires, for bench/arm-cost.
 *
 * Built against `qemu-plugin.h` from the source of the qemu the machine runs (bench/arm-cost fetches it as a
 * Debian source package), since the plugin ABI is only checked by version number.
 *
 *   qemu-aarch64 -plugin ./qemu-icount.so,out=COUNT_FILE PROGRAM ...
 *
 * Every translated block adds its instruction count each time it executes; a block that leaves early (a
 * fault, an exit in its middle) is still counted whole, which over billions of instructions is noise.
 * Counts from every guest thread go into one atomic total, written as a decimal number to `out` (or to
 * qemu's log) when the program exits. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

static uint64_t total;
static char out_path[4096];

static void tb_exec(unsigned int vcpu_index, void *udata) {
    (void)vcpu_index;
    __atomic_fetch_add(&total, (uint64_t)(uintptr_t)udata, __ATOMIC_RELAXED);
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)n);
}

static void at_exit(qemu_plugin_id_t id, void *p) {
    (void)id;
    (void)p;
    uint64_t n = __atomic_load_n(&total, __ATOMIC_RELAXED);
    if (out_path[0]) {
        /* Written whole to a temporary name, then renamed: a reader never sees half a number. */
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", out_path);
        FILE *f = fopen(tmp, "w");
        if (f && fprintf(f, "%" PRIu64 "\n", n) > 0 && fclose(f) == 0) {
            rename(tmp, out_path);
            return;
        }
        if (f) {
            fclose(f);
        }
        qemu_plugin_outs("qemu-icount: cannot write the count file\n");
    }
    char line[64];
    snprintf(line, sizeof line, "insns %" PRIu64 "\n", n);
    qemu_plugin_outs(line);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0 && strlen(argv[i] + 4) < sizeof out_path) {
            strcpy(out_path, argv[i] + 4);
        } else {
            fprintf(stderr, "qemu-icount: unknown or too long argument '%s' (takes out=FILE)\n", argv[i]);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
