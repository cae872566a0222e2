/* STREAM-style read-bandwidth probe for bench/compare-llamacpp: sums a large array of doubles with T
 * OpenMP threads (each thread first-touches and then reads its own contiguous part) and prints the best
 * rate over several passes, in GB/s (10^9 bytes per second).
 *   usage: stream-read THREADS [MIB=1024] [PASSES=8]
 *   build: gcc -O3 -march=native -fopenmp stream-read.c -o stream-read
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  long mib = argc > 2 ? atol(argv[2]) : 1024;
  int passes = argc > 3 ? atoi(argv[3]) : 8;
  if (threads < 1 || mib < 1 || passes < 1) {
    fprintf(stderr, "usage: stream-read THREADS [MIB] [PASSES]\n");
    return 2;
  }
  omp_set_num_threads(threads);
  size_t n = (size_t)mib * 1024 * 1024 / sizeof(double);
  double *a = aligned_alloc(64, n * sizeof(double));
  if (!a) {
    fprintf(stderr, "stream-read: cannot allocate %ld MiB\n", mib);
    return 1;
  }
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) a[i] = (double)(i & 1023) * 0.5;
  double best = 1e30, check = 0;
  for (int p = 0; p < passes; p++) {
    double s = 0, t0 = now();
#pragma omp parallel for simd schedule(static) reduction(+ : s)
    for (size_t i = 0; i < n; i++) s += a[i];
    double t = now() - t0;
    if (t < best) best = t;
    check += s;
  }
  double bytes = (double)n * sizeof(double);
  /* The checksum keeps the sums alive; stderr so stdout is only the rate. */
  fprintf(stderr, "stream-read: %d threads, %ld MiB, best of %d passes %.4f s (checksum %.0f)\n", threads, mib,
          passes, best, check);
  printf("%.2f\n", bytes / best / 1e9);
  free(a);
  return 0;
}
