# Sourced by setup.sh, test.sh, test-python.sh and fuzz.sh (after they set $root): when ccache is
# installed (setup.sh installs it), sets `launcher` to the CMake options that compile through it
# and exports what makes another clone on this machine hit the same entries: paths relative to
# the checkout in the keys, not the directory. CI builds a fresh clone after a session's builds,
# so its builds (build/, build-asan/, build-fuzz/, the Python module's) are mostly cache hits;
# cold, they are most of its time on 2 cores. Exported, not passed to CMake: ccache reads them
# when ninja runs it, so a later `cmake --build` in the same script needs them too.
launcher=()
if command -v ccache > /dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=true
fi
# One clone's four builds take ~80 MB of cache (351 objects, compressed): the default 5 GB
# holds many clones.
