// The two ways to bring a model's bytes from the page cache into a merge, timed alone (no
// merge math: a 16-bit sum of every value stands in for the kernels' loads):
//   mmap:  the files mapped once; each thread reads its 4 MiB pieces through the mapping
//          (page faults, the kernel mapping cached pages in) and releases each piece with
//          MADV_DONTNEED, as mergec's runtime does after a tensor or window;
//   pread: each thread preads its pieces into one reused 4 MiB buffer (a copy of every byte).
// Two threads (this VM's cores), pieces handed out alternately; rounds alternate the two ways
// and the medians are printed. The scale issue's "read into reused buffers" route would trade
// the first for the second: docs/benchmarks.md has what this measured.
//   cc -O2 -march=native -pthread bench/read_paths.c -o /tmp/read_paths
//   /tmp/read_paths 7 bench/data/*/model.safetensors      (7 rounds; files warm in the cache)
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { kPiece = 4 << 20, kThreads = 2, kMaxFiles = 16, kMaxRounds = 64 };

static int files;
static int fds[kMaxFiles];
static uint64_t sizes[kMaxFiles];
static uint8_t *maps[kMaxFiles];
static int usePread;

struct Worker {
  int id;
  uint64_t sum;
};

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *work(void *arg) {
  struct Worker *w = arg;
  uint8_t *buffer = aligned_alloc(4096, kPiece);
  uint64_t sum = 0;
  for (int f = 0; f < files; ++f)
    for (uint64_t at = (uint64_t)w->id * kPiece; at < sizes[f]; at += (uint64_t)kThreads * kPiece) {
      uint64_t len = sizes[f] - at < kPiece ? sizes[f] - at : kPiece;
      const uint16_t *v;
      if (usePread) {
        if (pread(fds[f], buffer, len, (off_t)at) != (ssize_t)len) {
          perror("pread");
          exit(1);
        }
        v = (const uint16_t *)buffer;
      } else {
        v = (const uint16_t *)(maps[f] + at);
      }
      uint32_t s = 0;
      for (uint64_t i = 0; i < len / 2; ++i)
        s += v[i];
      sum += s;
      if (!usePread)
        madvise(maps[f] + at, len, MADV_DONTNEED);
    }
  w->sum = sum;
  free(buffer);
  return NULL;
}

static double timed(int pread, uint64_t *sum) {
  usePread = pread;
  pthread_t threads[kThreads];
  struct Worker workers[kThreads];
  double t = now();
  for (int i = 0; i < kThreads; ++i) {
    workers[i].id = i;
    pthread_create(&threads[i], NULL, work, &workers[i]);
  }
  *sum = 0;
  for (int i = 0; i < kThreads; ++i) {
    pthread_join(threads[i], NULL);
    *sum += workers[i].sum;
  }
  return now() - t;
}

static int ascending(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s ROUNDS FILE...\n", argv[0]);
    return 2;
  }
  int rounds = atoi(argv[1]);
  if (rounds < 1 || rounds > kMaxRounds || argc - 2 > kMaxFiles) {
    fprintf(stderr, "read_paths: 1-%d rounds, at most %d files\n", kMaxRounds, kMaxFiles);
    return 2;
  }
  uint64_t total = 0;
  for (files = 0; files < argc - 2; ++files) {
    const char *path = argv[files + 2];
    struct stat st;
    fds[files] = open(path, O_RDONLY);
    if (fds[files] < 0 || fstat(fds[files], &st) != 0) {
      perror(path);
      return 1;
    }
    sizes[files] = (uint64_t)st.st_size;
    total += sizes[files];
    maps[files] = mmap(NULL, sizes[files], PROT_READ, MAP_SHARED, fds[files], 0);
    if (maps[files] == MAP_FAILED) {
      perror(path);
      return 1;
    }
  }
  double times[2][kMaxRounds];
  uint64_t sums[2];
  for (int r = -1; r < rounds; ++r) // round -1 warms the cache, untimed
    for (int way = 0; way < 2; ++way) {
      double t = timed(way, &sums[way]);
      if (r >= 0)
        times[way][r] = t;
    }
  if (sums[0] != sums[1]) {
    fprintf(stderr, "read_paths: the two ways read different bytes\n");
    return 1;
  }
  for (int way = 0; way < 2; ++way) {
    qsort(times[way], (size_t)rounds, sizeof(double), ascending);
    double median = times[way][rounds / 2];
    printf("%-5s %.3f s median of %d (%.2f GB/s), min %.3f s, max %.3f s\n",
           way ? "pread" : "mmap", median, rounds, (double)total / median / 1e9, times[way][0],
           times[way][rounds - 1]);
  }
  return 0;
}
