# W3 latency (sourced by scripts/bench): 5000 sequential round trips (1000
# with --quick) after 200 (100) unmeasured ones: submit one job, a worker
# echoes its 16-byte payload, the result is back, checked; p50 and p99 in
# microseconds. The same setups as W2 (see w2.sh, whose q_* helpers this
# uses): private beanstalkd, gearmand -t 1 and jsd, 2 worker connections,
# jsd over TCP loopback and over its unix socket, workers with no
# concurrency (deputy mode) and with concurrency 64, and the two JetStream
# setups (jsd_nats_c64: one jsd, queues in its embedded node;
# jsd2_nats_c64: producer and workers on two jsds sharing the queues). The time is the
# producer's, from the submission's write to the result's arrival in its
# reader goroutine (one goroutine hand-off, the same for every system).
# The floor, in the same run: relay and relay_unix, qload's line relay
# (qload/relay.go) between the same producer and workers: no queue, no
# parsing, the four cross-process hops of a round trip through jsd and
# nothing else. What no broker here can go under.

W3_needs="beanstalkd:beanstalkd gearmand:gearman-job-server"

bench_W3() {
  local n warm s out p50 p99
  n=$(pick 5000 1000)
  warm=$(pick 200 100)
  q_start_all "$BENCH_TMP/w3"
  declare -A g50=() g99=()
  for s in $Q_SYSTEMS relay relay_unix; do
    p50=- p99=-
    if out=$(q_run "$s" lat -n "$n" -warmup "$warm" -workers 2 -max-seconds 120); then
      p50=$(q_field p50_us "$out") p99=$(q_field p99_us "$out")
      log "W3 $s: $out"
      emit W3 "$s" p50 "$p50" us "$(q_note "$s")"
      emit W3 "$s" p99 "$p99" us
    else
      emit W3 "$s" p50 - us "failed: $out"
      emit W3 "$s" p99 - us "failed"
    fi
    g50[$s]=$p50 g99[$s]=$p99
  done
  q_stop_all

  local best="" j
  for s in $Q_PEERS; do
    [[ ${g50[$s]} =~ ^[0-9.]+$ ]] || continue
    if [ -z "$best" ] || awk -v a="${g50[$s]}" -v b="${g50[$best]}" 'BEGIN { exit !(a < b) }'; then best=$s; fi
  done
  [ -n "$best" ] || best=beanstalkd
  for j in jsd_c1 jsd_c64 jsd_unix_c1 jsd_unix_c64; do
    q_ratio_best W3 "${j}_p50" "${best}_p50" "${g50[$j]}" "${g50[$best]}"
    q_ratio_best W3 "${j}_p99" "${best}_p99" "${g99[$j]}" "${g99[$best]}"
  done
  for j in jsd_nats_c64 jsd2_nats_c64; do
    emit_ratio W3 "${j}_p50" jsd_c64_p50 "${g50[$j]}" "${g50[jsd_c64]}"
  done
  emit_ratio W3 jsd_c1_p50 relay_p50 "${g50[jsd_c1]}" "${g50[relay]}"
  emit_ratio W3 jsd_unix_c1_p50 relay_unix_p50 "${g50[jsd_unix_c1]}" "${g50[relay_unix]}"
  # Where relay/best peer is over 0.5, even a broker doing nothing misses
  # the p50 target over that transport here.
  emit_ratio W3 relay_p50 "${best}_p50" "${g50[relay]}" "${g50[$best]}"
}
