# W1 command overhead (sourced by scripts/bench): N x `true` at parallelism 2,
# wall time / N, through
#   xargs     xargs -P2 -n1 true                       the floor
#   gofloor   xargs -P2 -n1 gofloor true               the smallest Go wrapper
#   goexec    xargs -P2 -n1 gofloor -exec true         the smallest Go program
#             that execs the command in place (no fork, no wait): the
#             floor under `jsrun --exec`, which does that once it holds a slot
#   make      make -r -s -j2, N phony targets, recipe `@true`
#   tsp       task-spooler with 2 slots on a private TS_SOCKET: N x `tsp -n
#             true`, then a barrier job `tsp -n -N 2 true` (it runs only when
#             every job before it is done) and `tsp -w` on it
#   sem       GNU parallel's sem -j2 on a private --id (fewer commands: each
#             sem is a perl start of ~90 ms, see the line's note), then --wait
#   parallel  one GNU parallel -u -j2 for all N (runs each through bash -c)
#   jsrun     xargs -P2 -n1 jsrun -- true, slot from the private jsd --slots 2
#   jsrun_exec  the same with jsrun --exec (the command replaces jsrun)
# Each round runs every system once, in this order; the line is the median
# of the rounds. Every run is bounded by timeout(1). For jsrun and
# jsrun_exec a second line gives jsd's own CPU time per command (from
# /proc/JSD_PID/stat): on 2 CPUs at -P2 the daemon's share is part of the
# wall time, as task-spooler's server's is of tsp's.

W1_needs="xargs:findutils timeout:coreutils make:make tsp:task-spooler sem:parallel parallel:parallel"
W1_SYSTEMS="xargs gofloor goexec make tsp sem parallel jsrun jsrun_exec"

bench_W1() {
  local n nsem rounds r s v note best
  n=$(pick 2000 200)
  nsem=$(pick 200 20)
  rounds=$(pick 3 1)
  W1_DIR=$BENCH_TMP/w1
  mkdir -p "$W1_DIR/tsp" "$W1_DIR/home"
  seq "$n" >"$W1_DIR/input"
  w1_makefile "$n" >"$W1_DIR/Makefile"
  W1_FLOOR=$(go_helper gofloor)
  w1_tsp_start

  declare -A got=()
  for ((r = 1; r <= rounds; r++)); do
    for s in $W1_SYSTEMS; do
      if [ "$s" = sem ]; then v=$(w1_sem "$nsem") || v=failed; else v=$("w1_$s" "$n") || v=failed; fi
      got[$s]+="$v "
      log "W1 round $r/$rounds: $s $v ms/cmd"
    done
  done

  declare -A med=()
  for s in $W1_SYSTEMS; do
    # shellcheck disable=SC2086
    med[$s]=$(median ${got[$s]})
    note=""
    [ "$s" = sem ] && note="n=$nsem, not $n: each sem call is a perl start"
    [ "${med[$s]}" = - ] && note="failed${note:+; $note}"
    emit W1 "$s" ms_per_cmd "${med[$s]}" ms "$note"
  done
  for s in jsrun jsrun_exec; do
    # shellcheck disable=SC2046
    v=$(median $(awk -v n="$n" -v hz="$(getconf CLK_TCK)" '{ printf "%.4f\n", $1 * 1000 / hz / n }' "$W1_DIR/jsd_ticks.$s" 2>/dev/null))
    emit W1 "$s" jsd_cpu_per_cmd "$v" ms "jsd's own CPU time per command, within its ms_per_cmd"
  done

  best=""
  for s in make tsp sem parallel; do
    [[ ${med[$s]} =~ ^[0-9.]+$ ]] || continue
    if [ -z "$best" ] || awk -v a="${med[$s]}" -v b="${med[$best]}" 'BEGIN { exit !(a < b) }'; then best=$s; fi
  done
  emit_ratio W1 gofloor xargs "${med[gofloor]}" "${med[xargs]}"
  emit_ratio W1 jsrun gofloor "${med[jsrun]}" "${med[gofloor]}"
  emit_ratio W1 jsrun xargs "${med[jsrun]}" "${med[xargs]}"
  emit_ratio W1 jsrun_exec gofloor "${med[jsrun_exec]}" "${med[gofloor]}"
  emit_ratio W1 jsrun_exec goexec "${med[jsrun_exec]}" "${med[goexec]}"
  emit_ratio W1 jsrun_exec tsp "${med[jsrun_exec]}" "${med[tsp]}"
  # Where goexec/tsp is 1 or more, no Go program that execs a command
  # (jsrun --exec among them) can be faster than task-spooler here.
  emit_ratio W1 goexec tsp "${med[goexec]}" "${med[tsp]}"
  for s in make tsp sem parallel; do
    if [ "$s" = "$best" ]; then
      echo "$(emit_ratio W1 jsrun "$s" "${med[jsrun]}" "${med[$s]}") # best peer"
    else
      emit_ratio W1 jsrun "$s" "${med[jsrun]}" "${med[$s]}"
    fi
  done
}

# w1_per_cmd T0_US N: milliseconds per command since T0.
w1_per_cmd() {
  local t=$EPOCHREALTIME
  awk -v t0="$1" -v t1="${t/./}" -v n="$2" 'BEGIN { printf "%.4f", (t1 - t0) / 1000 / n }'
}

w1_makefile() {
  local n=$1 i targets=""
  for ((i = 1; i <= n; i++)); do targets+=" t$i"; done
  printf '.PHONY: all%s\nall:%s\n%s:\n\t@true\n' "$targets" "$targets" "${targets# }"
}

w1_xargs() {
  local t0
  t0=$(now_us)
  bounded 120 xargs -P2 -n1 -a "$W1_DIR/input" true </dev/null >/dev/null || return 1
  w1_per_cmd "$t0" "$1"
}

w1_gofloor() {
  local t0
  t0=$(now_us)
  bounded 120 xargs -P2 -n1 -a "$W1_DIR/input" "$W1_FLOOR" true </dev/null >/dev/null || return 1
  w1_per_cmd "$t0" "$1"
}

# w1_jsd_ticks: jsd's CPU time so far (utime + stime, in clock ticks).
w1_goexec() {
  local t0
  t0=$(now_us)
  bounded 120 xargs -P2 -n1 -a "$W1_DIR/input" "$W1_FLOOR" -exec true </dev/null >/dev/null || return 1
  w1_per_cmd "$t0" "$1"
}

w1_jsd_ticks() { awk '{ print $14 + $15 }' "/proc/$JSD_PID/stat" 2>/dev/null || echo 0; }

w1_jsrun() {
  local t0 c0
  c0=$(w1_jsd_ticks)
  t0=$(now_us)
  bounded 120 xargs -P2 -n1 -a "$W1_DIR/input" "$JS_BIN/jsrun" -- true </dev/null >/dev/null || return 1
  w1_per_cmd "$t0" "$1"
  echo $(($(w1_jsd_ticks) - c0)) >>"$W1_DIR/jsd_ticks.jsrun"
}

w1_jsrun_exec() {
  local t0 c0
  c0=$(w1_jsd_ticks)
  t0=$(now_us)
  bounded 120 xargs -P2 -n1 -a "$W1_DIR/input" "$JS_BIN/jsrun" --exec -- true </dev/null >/dev/null || return 1
  w1_per_cmd "$t0" "$1"
  echo $(($(w1_jsd_ticks) - c0)) >>"$W1_DIR/jsd_ticks.jsrun_exec"
}

w1_make() {
  local t0
  t0=$(now_us)
  bounded 120 make -r -s -j2 -f "$W1_DIR/Makefile" all </dev/null >/dev/null || return 1
  w1_per_cmd "$t0" "$1"
}

# The task-spooler server: started once by `tsp -S 2` (it forks a daemon),
# found by its TS_SOCKET, stopped by `tsp -K` and then by its pid on exit.
w1_tsp_start() {
  local d c v e
  export TS_SOCKET=$W1_DIR/tsp/socket TMPDIR=$W1_DIR/tsp
  TS_SLOTS=2 tsp -S 2 </dev/null >/dev/null
  at_exit "TS_SOCKET='$TS_SOCKET' timeout 5 tsp -K"
  for d in /proc/[0-9]*; do
    read -r c 2>/dev/null <"$d/comm" && [ "$c" = tsp ] || continue
    mapfile -d "" e 2>/dev/null <"$d/environ" || continue
    for v in "${e[@]}"; do
      [ "$v" = "TS_SOCKET=$TS_SOCKET" ] && { track_pid "${d#/proc/}"; break; }
    done
  done
  unset TS_SOCKET TMPDIR
  [ "$(TS_SOCKET=$W1_DIR/tsp/socket tsp -S)" = 2 ] || { log "W1: tsp -S 2 did not take"; return 1; }
}

w1_tsp() {
  local t0
  export TS_SOCKET=$W1_DIR/tsp/socket TMPDIR=$W1_DIR/tsp
  tsp -C </dev/null >/dev/null   # the finished list of earlier rounds
  t0=$(now_us)
  # shellcheck disable=SC2016
  bounded 120 bash -c 'for ((i = 0; i < $1; i++)); do tsp -n true || exit 1; done
    tsp -n -N 2 true && tsp -w' _ "$1" </dev/null >/dev/null || return 1
  w1_per_cmd "$t0" "$1"
}

w1_sem() {
  local t0 id=w1-$$-$RANDOM
  export HOME=$W1_DIR/home   # sem keeps its semaphores under ~/.parallel
  t0=$(now_us)
  # shellcheck disable=SC2016
  bounded 120 bash -c 'for ((i = 0; i < $1; i++)); do sem --will-cite --id "$2" -j2 true || exit 1; done
    sem --will-cite --id "$2" --wait' _ "$1" "$id" </dev/null >/dev/null || return 1
  w1_per_cmd "$t0" "$1"
}

w1_parallel() {
  local t0
  export HOME=$W1_DIR/home
  t0=$(now_us)
  bounded 120 parallel --will-cite -u -j2 true :::: "$W1_DIR/input" </dev/null >/dev/null || return 1
  w1_per_cmd "$t0" "$1"
}
