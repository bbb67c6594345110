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
#   jsd_nats_c64   jsd_c64 with the queues in NATS JetStream (jsd
#                  --nats-embed: one node, R1, inside that jsd)
#   jsd2_nats_c64  two jsds sharing their queues (issue 9): the producer
#                  on the first (its embedded node), the workers on a
#                  second jsd (--nats to that node): every job crosses
#                  from one jsd to the other through JetStream
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
Q_SYSTEMS="beanstalkd gearmand jsd_c1 jsd_c64 jsd_unix_c1 jsd_unix_c64 jsd_nats_c64 jsd2_nats_c64"
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
  for j in jsd_nats_c64 jsd2_nats_c64; do
    [[ " $systems " == *" $j "* ]] && emit_ratio W2 "$j" jsd_c64 "${got[$j]}" "${got[jsd_c64]}"
  done

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
    jsd_nats_c64) echo "as jsd_c64, queues in JetStream (--nats-embed, R1)" ;;
    jsd2_nats_c64) echo "producer on one jsd, workers on another, through JetStream (R1)" ;;
    relay) echo "the floor: a line relay with no queue and no parsing (qload relay), TCP loopback" ;;
    relay_unix) echo "the floor: the same relay on a unix socket" ;;
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
  env $JSD_ENV "$JS_BIN/jsd" --dir "$dir/js" --slots 2 --host 127.0.0.1 --port "$port" </dev/null >>"$Q_JSD_LOG" 2>&1 &
  Q_JSD_PID=$!
  track_pid "$Q_JSD_PID"
  Q_JSD_ADDR=127.0.0.1:$port
  Q_JSD_SOCK=unix:$dir/js/jsd.sock
  q_wait "$Q_JSD_ADDR" "$Q_JSD_PID" jsd "$Q_JSD_LOG" && q_wait "$Q_JSD_SOCK" "$Q_JSD_PID" jsd "$Q_JSD_LOG"
}

# q_jsd_nats DIR: two private jsds sharing their queues: the first runs
# a NATS node (--nats-embed), the second uses it (--nats); sets
# Q_JN_ADDR, Q_JN2_ADDR (TCP), Q_JN_PID, Q_JN2_PID, Q_JN_LOG.
q_jsd_nats() {
  local dir=$1 port port2 nport
  mkdir -p "$dir"
  mkdir -m 700 "$dir/a" "$dir/b"
  port=$(q_free_port) port2=$(q_free_port) nport=$(q_free_port)
  Q_JN_LOG=$dir/jsd-a.log
  env $JSD_ENV "$JS_BIN/jsd" --dir "$dir/a" --slots 2 --host 127.0.0.1 --port "$port" \
    --nats-embed --nats-name bench-a --nats-listen "127.0.0.1:$nport" </dev/null >>"$Q_JN_LOG" 2>&1 &
  Q_JN_PID=$!
  track_pid "$Q_JN_PID"
  Q_JN_ADDR=127.0.0.1:$port
  q_wait "$Q_JN_ADDR" "$Q_JN_PID" "jsd --nats-embed" "$Q_JN_LOG" || return 1
  env $JSD_ENV "$JS_BIN/jsd" --dir "$dir/b" --slots 2 --host 127.0.0.1 --port "$port2" \
    --nats "nats://127.0.0.1:$nport" --nats-name bench-b </dev/null >>"$dir/jsd-b.log" 2>&1 &
  Q_JN2_PID=$!
  track_pid "$Q_JN2_PID"
  Q_JN2_ADDR=127.0.0.1:$port2
  q_wait "$Q_JN2_ADDR" "$Q_JN2_PID" "jsd --nats" "$dir/jsd-b.log"
}

# q_relay DIR: W3's floor, qload's line relay (relay.go) on TCP loopback
# and on a unix socket; sets Q_RL_ADDR, Q_RL_SOCK, Q_RL_PID, Q_RLU_PID.
q_relay() {
  local dir=$1 port
  mkdir -p "$dir"
  port=$(q_free_port)
  "$Q_LOAD" relay -listen "127.0.0.1:$port" </dev/null >>"$dir/relay.log" 2>&1 &
  Q_RL_PID=$!
  track_pid "$Q_RL_PID"
  "$Q_LOAD" relay -listen "unix:$dir/relay.sock" </dev/null >>"$dir/relay.log" 2>&1 &
  Q_RLU_PID=$!
  track_pid "$Q_RLU_PID"
  Q_RL_ADDR=127.0.0.1:$port Q_RL_SOCK=unix:$dir/relay.sock
  q_wait "$Q_RL_ADDR" "$Q_RL_PID" "qload relay" "$dir/relay.log" &&
    q_wait "$Q_RL_SOCK" "$Q_RLU_PID" "qload relay" "$dir/relay.log"
}

# q_start_all DIR: the servers of W2 and W3.
q_start_all() {
  Q_LOAD=$(go_helper qload)
  Q_BS_ADDR="" Q_GM_ADDR="" Q_JSD_ADDR="" Q_JSD_SOCK="" Q_JN_ADDR="" Q_JN2_ADDR="" Q_RL_ADDR="" Q_RL_SOCK=""
  q_beanstalkd "$1/beanstalkd" || Q_BS_ADDR=""
  q_gearmand "$1/gearmand" || Q_GM_ADDR=""
  q_jsd "$1/jsd" || { Q_JSD_ADDR=""; Q_JSD_SOCK=""; }
  q_jsd_nats "$1/jsd-nats" || { Q_JN_ADDR=""; Q_JN2_ADDR=""; }
  q_relay "$1/relay" || { Q_RL_ADDR=""; Q_RL_SOCK=""; }
}

q_stop_all() {
  local p
  for p in ${Q_RLU_PID:-} ${Q_RL_PID:-} ${Q_JN2_PID:-} ${Q_JN_PID:-} ${Q_JSD_PID:-} ${Q_GM_PID:-} ${Q_BS_PID:-}; do stop_pid "$p"; done
  Q_RLU_PID="" Q_RL_PID="" Q_JN2_PID="" Q_JN_PID="" Q_JSD_PID="" Q_GM_PID="" Q_BS_PID=""
}

# q_run SYSTEM MODE ARGS...: one qload run against SYSTEM; prints its
# output, or on failure the reason (and logs what jsd said meanwhile).
q_run() {
  local s=$1 mode=$2 addr sys conc=0 out rc jsd_lines=0 logf=${Q_JSD_LOG:-/dev/null} waddr=()
  shift 2
  case "$s" in
    beanstalkd) sys=beanstalkd addr=$Q_BS_ADDR ;;
    gearmand) sys=gearmand addr=$Q_GM_ADDR ;;
    jsd_c1) sys=jsd addr=$Q_JSD_ADDR ;;
    jsd_c64) sys=jsd addr=$Q_JSD_ADDR conc=64 ;;
    jsd_unix_c1) sys=jsd addr=$Q_JSD_SOCK ;;
    jsd_unix_c64) sys=jsd addr=$Q_JSD_SOCK conc=64 ;;
    jsd_nats_c64) sys=jsd addr=$Q_JN_ADDR conc=64 logf=${Q_JN_LOG:-/dev/null} ;;
    jsd2_nats_c64) sys=jsd addr=$Q_JN_ADDR conc=64 logf=${Q_JN_LOG:-/dev/null}
      [ -n "$Q_JN2_ADDR" ] && waddr=(-worker-addr "$Q_JN2_ADDR") || addr="" ;;
    relay) sys=jsd addr=$Q_RL_ADDR ;;     # it speaks jsd's protocol's lines
    relay_unix) sys=jsd addr=$Q_RL_SOCK ;;
  esac
  [ -n "$addr" ] || { echo "server did not start"; return 1; }
  [ "$sys" = jsd ] && jsd_lines=$(wc -l <"$logf")
  out=$(bounded 180 "$Q_LOAD" "$mode" -system "$sys" -addr "$addr" "${waddr[@]}" -concurrency "$conc" "$@" </dev/null 2>&1)
  rc=$?
  if [ "$sys" = jsd ] && [ "$(wc -l <"$logf")" -gt "$jsd_lines" ]; then
    log "$s: jsd printed: $(tail -n +"$((jsd_lines + 1))" "$logf" | head -20)"
  fi
  if [ $rc -ne 0 ]; then
    [ $rc -ge 124 ] && [ $rc -le 137 ] && out="timed out (exit $rc) $out"
    echo "${out//$'\n'/; }"
    return 1
  fi
  echo "$out"
}
