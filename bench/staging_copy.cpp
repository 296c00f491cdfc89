// The CUDA pipeline's staging copy timed alone: a tensor's input bytes from fresh mappings of
// the page cache into one buffer (page-locked memory in mergec), by one thread (the pipeline's
// copier before session 13) and by two threads taking 4 MiB pieces from a shared counter (the
// pool now; this VM has two cores). Rounds alternate; docs/benchmarks.md has what it measured.
//   clang++-22 -O2 -pthread bench/staging_copy.cpp -o /tmp/staging_copy
//   /tmp/staging_copy bench/data/*/model.safetensors      (files warm in the cache)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>
#include <atomic>
#include <algorithm>
int main(int argc, char **argv) {
  std::vector<std::pair<const char *, size_t>> maps;
  size_t total = 0;
  for (int i = 1; i < argc; ++i) {
    int fd = open(argv[i], O_RDONLY); struct stat st; fstat(fd, &st);
    void *p = mmap(nullptr, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    maps.push_back({(const char *)p, (size_t)st.st_size}); total += st.st_size;
  }
  std::vector<char> dst(total);
  memset(dst.data(), 1, total);
  for (int threads : {1, 2, 1, 2, 1, 2}) {
    // Fresh mappings each round, as the runtime maps files anew each run (page faults included).
    std::vector<std::pair<const char *, size_t>> fresh;
    for (int i = 1; i < argc; ++i) { int fd = open(argv[i], O_RDONLY); struct stat st; fstat(fd, &st);
      fresh.push_back({(const char *)mmap(nullptr, st.st_size, PROT_READ, MAP_SHARED, fd, 0), (size_t)st.st_size}); close(fd); }
    struct Piece { char *to; const char *from; size_t n; };
    std::vector<Piece> pieces; size_t off = 0;
    for (auto &[p, n] : fresh) { for (size_t a = 0; a < n; a += 4 << 20) pieces.push_back({dst.data() + off + a, p + a, std::min<size_t>(4 << 20, n - a)}); off += n; }
    auto t0 = std::chrono::steady_clock::now();
    std::atomic<size_t> next{0};
    auto work = [&] { for (size_t i; (i = next++) < pieces.size();) memcpy(pieces[i].to, pieces[i].from, pieces[i].n); };
    std::vector<std::thread> ts; for (int t = 1; t < threads; ++t) ts.emplace_back(work); work(); for (auto &t : ts) t.join();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    printf("%d thread(s): %.3f s, %.2f GB/s\n", threads, s, total / s / 1e9);
    for (auto &[p, n] : fresh) munmap((void *)p, n);
  }
}
