# W2 queue throughput (sourced by scripts/bench): one producer connection
# keeping up to 64 jobs outstanding, 2 worker connections echoing each
# job's 16-byte payload, for ~10 s (2 s with --quick, which leaves out the
# two jsd_unix systems); jobs/s, every result checked (the payload derived
# from the job's id, back for that id, exactly once, none missing: a run
# that misses one fails). The systems:
#   beanstalkd     put into a jobs tube; workers reserve, put "ID PAYLOAD"
#                  into the producer's reply tube, delete (one write); the
#                  producer reserves and deletes the replies on a second
#                  connection
#   gearmand       gearmand -t 1 (one I/O thread: ~30% faster than its
#                  default 4 on this 2-CPU machine); foreground jobs
#                  (SUBMIT_JOB), workers GRAB_JOB / WORK_COMPLETE, PRE_SLEEP
#   jsd_c1         jsd over TCP on loopback, like the peers; "do" lines
#                  with an id and no "req" (no ack: the result is the
#                  answer, as for deputy's clients); workers as deputy's:
#                  can_do with no concurrency, one job at a time
#   jsd_c64        the same with workers registering concurrency 64
#   jsd_unix_c1, jsd_unix_c64   the same two over jsd's unix socket, the
#                  transport of a local jsworker
# Every server is private: started here on a free port of 127.0.0.1 (jsd
# with its own --dir and --slots 2), stopped by PID when the workload ends.
# The load generator is qload (Go, beside this file; one process holds the
# producer and the workers, so client, workers and server share the 2 CPUs
# as they would on one machine). Each queue (tube, function, type) is new
# per run.
#
# This file also holds the helpers W3 and W4 use (q_*): the files are
# sourced in order, w2.sh first.

W2_needs="beanstalkd:beanstalkd gearmand:gearman-job-server"
Q_SYSTEMS="beanstalkd gearmand jsd_c1 jsd_c64 jsd_unix_c1 jsd_unix_c64"
Q_PEERS="beanstalkd gearmand"

bench_W2() {
  local secs s out v systems
  secs=$(pick 10 2)
  systems=$(pick "$Q_SYSTEMS" "${Q_SYSTEMS/ jsd_unix_c1 jsd_unix_c64/}")
  q_start_all "$BENCH_TMP/w2"
  declare -A got=()
  for s in $systems; do
    v=-
    if out=$(q_run "$s" tput -seconds "$secs" -outstanding 64 -workers 2 -max-seconds $((secs + 60))); then
      v=$(q_field jobs_per_s "$out")
      log "W2 $s: $out"
      emit W2 "$s" jobs_per_s "$v" jobs/s "$(q_note "$s")"
    else
      emit W2 "$s" jobs_per_s - jobs/s "failed: $out"
    fi
    got[$s]=$v
  done
  q_stop_all

  local best="" j
  for s in $Q_PEERS; do
    [[ ${got[$s]} =~ ^[0-9.]+$ ]] || continue
    if [ -z "$best" ] || awk -v a="${got[$s]}" -v b="${got[$best]}" 'BEGIN { exit !(a > b) }'; then best=$s; fi
  done
  for j in jsd_c64 jsd_c1 jsd_unix_c64 jsd_unix_c1; do
    [[ " $systems " == *" $j "* ]] || continue
    for s in $Q_PEERS; do
      if [ "$s" = "$best" ]; then
        q_ratio_best W2 "$j" "$s" "${got[$j]}" "${got[$s]}"
      else
        emit_ratio W2 "$j" "$s" "${got[$j]}" "${got[$s]}"
      fi
    done
  done
}

# ---- helpers shared with W3 and W4 -------------------------------------------

# q_note SYSTEM: the note on a system's line.
q_note() {
  case "$1" in
    beanstalkd) echo "put/reserve/delete, a reply tube" ;;
    gearmand) echo "gearmand -t 1 (beat its default 4 threads here by ~30%)" ;;
    jsd_c1) echo "TCP loopback, workers one job at a time (deputy mode)" ;;
    jsd_c64) echo "TCP loopback, workers register concurrency 64" ;;
    jsd_unix_c1) echo "unix socket, workers one job at a time (deputy mode)" ;;
    jsd_unix_c64) echo "unix socket, workers register concurrency 64" ;;
  esac
}

# q_ratio_best W A B VA VB: emit_ratio, noting that B is the best peer.
q_ratio_best() {
  local line
  line=$(emit_ratio "$@")
  [[ $line == *"# "* ]] || line+=" # best peer"
  echo "$line"
}

# q_field KEY "k=v k=v...": the value of KEY in qload's output.
q_field() {
  local kv
  for kv in $2; do
    [ "${kv%%=*}" = "$1" ] && { echo "${kv#*=}"; return; }
  done
  echo -
}

# q_free_port: a TCP port of 127.0.0.1 that was free a moment ago.
q_free_port() { "$Q_LOAD" freeport; }

# q_wait ADDR PID NAME LOG: wait until ADDR accepts; fail if PID died.
q_wait() {
  local addr=$1 pid=$2 name=$3 logf=$4 i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || { log "$name exited: $(tail -5 "$logf" 2>/dev/null)"; return 1; }
    "$Q_LOAD" waitfor -addr "$addr" -seconds 0.1 2>/dev/null && return 0
  done
  log "$name does not accept on $addr after 10 s: $(tail -5 "$logf" 2>/dev/null)"
  return 1
}

# q_beanstalkd DIR: a private beanstalkd; sets Q_BS_ADDR, Q_BS_PID.
q_beanstalkd() {
  local dir=$1 port
  mkdir -p "$dir"
  port=$(q_free_port)
  beanstalkd -l 127.0.0.1 -p "$port" </dev/null >>"$dir/beanstalkd.log" 2>&1 &
  Q_BS_PID=$!
  track_pid "$Q_BS_PID"
  Q_BS_ADDR=127.0.0.1:$port
  q_wait "$Q_BS_ADDR" "$Q_BS_PID" beanstalkd "$dir/beanstalkd.log"
}

# q_gearmand DIR: a private gearmand -t 1; sets Q_GM_ADDR, Q_GM_PID.
q_gearmand() {
  local dir=$1 port bin
  mkdir -p "$dir"
  bin=$(command -v gearmand || echo /usr/sbin/gearmand)
  port=$(q_free_port)
  "$bin" -t 1 -L 127.0.0.1 -p "$port" -l "$dir/gearmand.log" -P "$dir/gearmand.pid" \
    </dev/null >>"$dir/gearmand.out" 2>&1 &
  Q_GM_PID=$!
  track_pid "$Q_GM_PID"
  Q_GM_ADDR=127.0.0.1:$port
  q_wait "$Q_GM_ADDR" "$Q_GM_PID" gearmand "$dir/gearmand.out"
}

# q_jsd DIR: a private jsd (--slots 2) with a TCP listener on 127.0.0.1;
# sets Q_JSD_ADDR (TCP), Q_JSD_SOCK (unix:PATH), Q_JSD_PID, Q_JSD_LOG.
q_jsd() {
  local dir=$1 port
  mkdir -p "$dir"
  mkdir -m 700 "$dir/js"
  port=$(q_free_port)
  Q_JSD_LOG=$dir/jsd.log
  "$JS_BIN/jsd" --dir "$dir/js" --slots 2 --host 127.0.0.1 --port "$port" </dev/null >>"$Q_JSD_LOG" 2>&1 &
  Q_JSD_PID=$!
  track_pid "$Q_JSD_PID"
  Q_JSD_ADDR=127.0.0.1:$port
  Q_JSD_SOCK=unix:$dir/js/jsd.sock
  q_wait "$Q_JSD_ADDR" "$Q_JSD_PID" jsd "$Q_JSD_LOG" && q_wait "$Q_JSD_SOCK" "$Q_JSD_PID" jsd "$Q_JSD_LOG"
}

# q_start_all DIR: the three servers of W2 and W3.
q_start_all() {
  Q_LOAD=$(go_helper qload)
  Q_BS_ADDR="" Q_GM_ADDR="" Q_JSD_ADDR="" Q_JSD_SOCK=""
  q_beanstalkd "$1/beanstalkd" || Q_BS_ADDR=""
  q_gearmand "$1/gearmand" || Q_GM_ADDR=""
  q_jsd "$1/jsd" || { Q_JSD_ADDR=""; Q_JSD_SOCK=""; }
}

q_stop_all() {
  local p
  for p in ${Q_JSD_PID:-} ${Q_GM_PID:-} ${Q_BS_PID:-}; do stop_pid "$p"; done
  Q_JSD_PID="" Q_GM_PID="" Q_BS_PID=""
}

# q_run SYSTEM MODE ARGS...: one qload run against SYSTEM; prints its
# output, or on failure the reason (and logs what jsd said meanwhile).
q_run() {
  local s=$1 mode=$2 addr sys conc=0 out rc jsd_lines=0
  shift 2
  case "$s" in
    beanstalkd) sys=beanstalkd addr=$Q_BS_ADDR ;;
    gearmand) sys=gearmand addr=$Q_GM_ADDR ;;
    jsd_c1) sys=jsd addr=$Q_JSD_ADDR ;;
    jsd_c64) sys=jsd addr=$Q_JSD_ADDR conc=64 ;;
    jsd_unix_c1) sys=jsd addr=$Q_JSD_SOCK ;;
    jsd_unix_c64) sys=jsd addr=$Q_JSD_SOCK conc=64 ;;
  esac
  [ -n "$addr" ] || { echo "server did not start"; return 1; }
  [ "$sys" = jsd ] && jsd_lines=$(wc -l <"$Q_JSD_LOG")
  out=$(bounded 180 "$Q_LOAD" "$mode" -system "$sys" -addr "$addr" -concurrency "$conc" "$@" </dev/null 2>&1)
  rc=$?
  if [ "$sys" = jsd ] && [ "$(wc -l <"$Q_JSD_LOG")" -gt "$jsd_lines" ]; then
    log "$s: jsd printed: $(tail -n +"$((jsd_lines + 1))" "$Q_JSD_LOG" | head -20)"
  fi
  if [ $rc -ne 0 ]; then
    [ $rc -ge 124 ] && [ $rc -le 137 ] && out="timed out (exit $rc) $out"
    echo "${out//$'\n'/; }"
    return 1
  fi
  echo "$out"
}
