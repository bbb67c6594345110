# W5 build overhead (sourced by scripts/bench): a Makefile of 400 small C
# compiles (60 with --quick; 400 generated one-function .c files, cc -O0
# -c each), wall seconds of
#   make    make -j2 alone
#   jsrun   jsrun -- make (no -j: make takes the pool from the MAKEFLAGS
#           jsrun passes, -j2 and the private jsd's jobserver; that jsd runs
#           with --slots 2)
# One unmeasured build first (caches), then 3 rounds (1 with --quick), each
# building with both, the order alternating between rounds, `make clean`
# before every build; the line is the median.

W5_needs="make:make cc:gcc"

bench_W5() {
  local n rounds r s v dir
  n=$(pick 400 60)
  rounds=$(pick 3 1)
  dir=$BENCH_TMP/w5
  w5_tree "$dir" "$n"
  make -s -C "$dir" clean </dev/null >/dev/null
  bounded 300 make -s -j2 -C "$dir" </dev/null >/dev/null || log "W5 warm-up build failed"

  declare -A got=()
  for ((r = 1; r <= rounds; r++)); do
    local order="make jsrun"
    ((r % 2 == 0)) && order="jsrun make"
    for s in $order; do
      make -s -C "$dir" clean </dev/null >/dev/null
      v=$("w5_$s" "$dir" "$n") || v=failed
      got[$s]+="$v "
      log "W5 round $r/$rounds: $s $v s"
    done
  done
  make -s -C "$dir" clean </dev/null >/dev/null

  declare -A med=()
  for s in make jsrun; do
    # shellcheck disable=SC2086
    med[$s]=$(median ${got[$s]})
    if [ "${med[$s]}" = - ]; then
      emit W5 "$s" wall - s "failed"
    elif [ "$s" = make ]; then
      emit W5 make wall "${med[$s]}" s "make -j2, $n compiles"
    else
      emit W5 jsrun wall "${med[$s]}" s "jsrun -- make under jsd --slots 2, $n compiles"
    fi
  done
  emit_ratio W5 jsrun make "${med[jsrun]}" "${med[make]}"
}

# w5_tree DIR N: N tiny C files and their Makefile.
w5_tree() {
  local dir=$1 n=$2 i
  mkdir -p "$dir"
  for ((i = 1; i <= n; i++)); do
    printf 'int f%d(int x) { int s = 0; for (int i = 0; i < x; i++) s += i * %d; return s; }\n' "$i" "$i" >"$dir/f$i.c"
  done
  printf '%s\n' \
    'SRCS := $(wildcard f*.c)' \
    'OBJS := $(SRCS:.c=.o)' \
    'all: $(OBJS)' \
    '%.o: %.c' \
    '	cc -O0 -c $< -o $@' \
    'clean:' \
    '	rm -f *.o' \
    '.PHONY: all clean' >"$dir/Makefile"
}

# w5_count DIR N: fail unless all N objects were built.
w5_count() {
  local got
  got=$(find "$1" -name 'f*.o' | wc -l)
  [ "$got" -eq "$2" ] || { log "W5: $got of $2 objects built"; return 1; }
}

w5_make() {
  local t0 t1
  t0=$(now_us)
  bounded 300 make -s -j2 -C "$1" </dev/null >/dev/null || return 1
  t1=$(now_us)
  w5_count "$1" "$2" || return 1
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }'
}

w5_jsrun() {
  local t0 t1
  t0=$(now_us)
  bounded 300 "$JS_BIN/jsrun" --no-autostart -- make -s -C "$1" </dev/null >/dev/null || return 1
  t1=$(now_us)
  w5_count "$1" "$2" || return 1
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }'
}
