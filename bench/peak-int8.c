/* Integer-dot peak probe: the "% of peak" that kernel rates are stated against. With T OpenMP threads,
 * each thread runs 12 independent accumulator chains of one 8-bit dot step on registers (no memory) and
 * the best of several passes is printed as GOP/s (2 ops per multiply-add, 10^9 per second):
 *   maddubs  AVX2 vpmaddubsw + vpmaddwd + vpaddd (ggml's AVX2 step: 32 u8·i8 products per 3 instructions)
 *   dpbusd   AVX-512 VNNI vpdpbusd on 256-bit vectors (32 products per instruction), where the CPU has it
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

static __attribute__((noinline)) int run_maddubs(long steps, int seed) {
  __m256i a = _mm256_set1_epi8((char)(seed | 1)), b = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
  __m256i acc[CHAINS];
  for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_epi32(c);
  for (long i = 0; i < steps; i++) {
    for (int c = 0; c < CHAINS; c++)
      acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
    __asm__ volatile("" : "+x"(a), "+x"(b));
  }
  int s = 0;
  for (int c = 0; c < CHAINS; c++) s += _mm256_extract_epi32(acc[c], 0);
  return s;
}

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
static __attribute__((noinline)) int run_dpbusd(long steps, int seed) {
  __m256i a = _mm256_set1_epi8((char)(seed | 1)), b = _mm256_set1_epi8(3);
  __m256i acc[CHAINS];
  for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_epi32(c);
  for (long i = 0; i < steps; i++) {
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_dpbusd_epi32(acc[c], a, b);
    __asm__ volatile("" : "+x"(a), "+x"(b));
  }
  int s = 0;
  for (int c = 0; c < CHAINS; c++) s += _mm256_extract_epi32(acc[c], 0);
  return s;
}
#endif

static double measure(int threads, int (*kernel)(long, int)) {
  double best = 1e30;
  volatile int sink = 0;
  for (int pass = 0; pass < 3; pass++) {
    double t0 = now();
#pragma omp parallel num_threads(threads)
    { sink += kernel(STEPS / 10, omp_get_thread_num()); }
    double t = now() - t0;
    if (t < best) best = t;
  }
  /* Each step: CHAINS vectors × 32 products × 2 ops, per thread. */
  return (double)threads * (STEPS / 10) * CHAINS * 32 * 2 / best / 1e9;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  if (threads < 1) {
    fprintf(stderr, "usage: peak-int8 THREADS\n");
    return 2;
  }
  printf("maddubs %.1f\n", measure(threads, run_maddubs));
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  printf("dpbusd %.1f\n", measure(threads, run_dpbusd));
#endif
  return 0;
}
