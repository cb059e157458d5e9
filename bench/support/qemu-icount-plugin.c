/* bench/io-passes (issue 5): a QEMU TCG plugin (`-plugin FILE.so,out=OUT`) that counts the guest instructions QEMU
 * executes, so both VMMs' instructions per MiB are counted rather than QEMU's taken as ringzero's. Counted per
 * translation block as it starts (an inline add of the block's instruction count: a block left early by an exception
 * or interrupt still counts whole, and a `rep` string instruction counts once per iteration, as TCG runs each
 * iteration as its own block). The plugin API's C declarations (version 1, QEMU 7.x's
 * docs/devel/tcg-plugins.rst) are written out here because its header is not packaged with Debian's QEMU.
 * Every 1 ms a thread writes the total (8 bytes, little-endian) at offset 0 of OUT; when the file OUT.req exists, it
 * writes each block's guest start address and the instructions run in it since boot (hex address, decimal count,
 * one block a line) to the path OUT.req holds, then removes OUT.req. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*tb_trans_cb)(qemu_plugin_id_t, struct qemu_plugin_tb *);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr, uint64_t imm);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t total;
struct ent { uint64_t vaddr, count; };
#define CHUNK 65536
static struct ent *chunks[4096];
static size_t nents;
static char out[4096];

static void trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  size_t n = qemu_plugin_tb_n_insns(tb);
  size_t i = nents;
  if (i / CHUNK >= 4096) { qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &total, n); return; }
  if (!chunks[i / CHUNK]) chunks[i / CHUNK] = calloc(CHUNK, sizeof(struct ent));
  struct ent *e = &chunks[i / CHUNK][i % CHUNK];
  e->vaddr = qemu_plugin_tb_vaddr(tb);
  __atomic_store_n(&nents, i + 1, __ATOMIC_RELEASE);
  qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &total, n);
  qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &e->count, n);
}

static void *loop(void *arg) {
  char req[4200];
  snprintf(req, sizeof req, "%s.req", out);
  int fd = open(out, O_WRONLY | O_CREAT, 0644);
  for (;;) {
    uint64_t t = *(volatile uint64_t *)&total;
    pwrite(fd, &t, 8, 0);
    FILE *r = fopen(req, "r");
    if (r) {
      char path[4096] = {0};
      if (fgets(path, sizeof path, r)) {
        path[strcspn(path, "\n")] = 0;
        FILE *o = fopen(path, "w");
        size_t n = __atomic_load_n(&nents, __ATOMIC_ACQUIRE);
        for (size_t i = 0; o && i < n; i++) {
          struct ent *e = &chunks[i / CHUNK][i % CHUNK];
          if (e->count) fprintf(o, "%llx %llu\n", (unsigned long long)e->vaddr, (unsigned long long)e->count);
        }
        if (o) fclose(o);
      }
      fclose(r);
      unlink(req);
    }
    usleep(1000);
  }
  return 0;
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
  for (int i = 0; i < argc; i++) if (!strncmp(argv[i], "out=", 4)) snprintf(out, sizeof out, "%s", argv[i] + 4);
  if (!out[0]) { fprintf(stderr, "icount plugin: out=FILE needed\n"); return -1; }
  qemu_plugin_register_vcpu_tb_trans_cb(id, trans);
  pthread_t t;
  pthread_create(&t, 0, loop, 0);
  return 0;
}
