/* Integer-dot peak probe: the "% of peak" that kernel rates are stated against. With T OpenMP threads,
 * each thread runs independent accumulator chains of one 8-bit dot step on registers (no memory: the
 * chain loops are unrolled, and each maddubs chain has its own operand so the compiler cannot compute the
 * product once for all of them) and the best of several passes is printed as GOP/s (2 ops per
 * multiply-add, 10^9 per second):
 *   maddubs  AVX2 vpmaddubsw + vpmaddwd + vpaddd (ggml's AVX2 step: 32 u8·i8 products per 3 instructions)
 *   dpbusd   AVX-512 VNNI vpdpbusd on 256-bit vectors (32 products per instruction), where the CPU has it
 *   dpbusd-vex  the same instruction in its AVX-VNNI (VEX) form, where the CPU has it (Alder Lake and the
 *            N-series, Sapphire Rapids, Zen 5): the step the kernels take without AVX-512
 *   usage: peak-int8 THREADS
 *   build: gcc -O2 -march=native -fopenmp peak-int8.c -o peak-int8
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CHAINS 12
#define STEPS 20000000L

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* maddubs and madd do not depend on the accumulator, so 6 chains (each with its own u8 operand, 6 + 6 + 2
 * of the 16 ymm registers) keep both multiply ports busy. */
#define MADD_CHAINS 6
static __attribute__((noinline)) int run_maddubs(long steps, int seed) {
  __m256i b = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
  __m256i a[MADD_CHAINS], acc[MADD_CHAINS];
  for (int c = 0; c < MADD_CHAINS; c++) {
    a[c] = _mm256_set1_epi8((char)((seed + c) | 1));
    acc[c] = _mm256_set1_epi32(c);
  }
  for (long i = 0; i < steps; i++) {
#pragma GCC unroll 16
    for (int c = 0; c < MADD_CHAINS; c++)
      acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(_mm256_maddubs_epi16(a[c], b), ones));
    __asm__ volatile("" : "+x"(a[0]), "+x"(a[1]), "+x"(a[2]), "+x"(a[3]), "+x"(a[4]), "+x"(a[5]), "+x"(b));
  }
  int s = 0;
  for (int c = 0; c < MADD_CHAINS; c++) s += _mm256_extract_epi32(acc[c], 0);
  return s;
}

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
static __attribute__((noinline)) int run_dpbusd(long steps, int seed) {
  __m256i a = _mm256_set1_epi8((char)(seed | 1)), b = _mm256_set1_epi8(3);
  __m256i acc[CHAINS];
  for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_epi32(c);
  for (long i = 0; i < steps; i++) {
#pragma GCC unroll 16
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_dpbusd_epi32(acc[c], a, b);
    __asm__ volatile("" : "+x"(a), "+x"(b));
  }
  int s = 0;
  for (int c = 0; c < CHAINS; c++) s += _mm256_extract_epi32(acc[c], 0);
  return s;
}
#endif

#if defined(__AVXVNNI__)
static __attribute__((noinline)) int run_dpbusd_vex(long steps, int seed) {
  __m256i a = _mm256_set1_epi8((char)(seed | 1)), b = _mm256_set1_epi8(3);
  __m256i acc[CHAINS];
  for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_epi32(c);
  for (long i = 0; i < steps; i++) {
#pragma GCC unroll 16
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_dpbusd_avx_epi32(acc[c], a, b);
    __asm__ volatile("" : "+x"(a), "+x"(b));
  }
  int s = 0;
  for (int c = 0; c < CHAINS; c++) s += _mm256_extract_epi32(acc[c], 0);
  return s;
}
#endif

static double measure(int threads, int (*kernel)(long, int), int chains) {
  double best = 1e30;
  volatile int sink = 0;
  for (int pass = 0; pass < 3; pass++) {
    double t0 = now();
#pragma omp parallel num_threads(threads)
    { sink += kernel(STEPS / 10, omp_get_thread_num()); }
    double t = now() - t0;
    if (t < best) best = t;
  }
  /* Each step: `chains` vectors × 32 products × 2 ops, per thread. */
  return (double)threads * (STEPS / 10) * chains * 32 * 2 / best / 1e9;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  if (threads < 1) {
    fprintf(stderr, "usage: peak-int8 THREADS\n");
    return 2;
  }
  printf("maddubs %.1f\n", measure(threads, run_maddubs, MADD_CHAINS));
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  printf("dpbusd %.1f\n", measure(threads, run_dpbusd, CHAINS));
#endif
#if defined(__AVXVNNI__)
  printf("dpbusd-vex %.1f\n", measure(threads, run_dpbusd_vex, CHAINS));
#endif
  return 0;
}
