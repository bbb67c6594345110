# W4 memory (sourced by scripts/bench): 1,000,000 queued 16-byte jobs
# (100,000 with --quick) with no worker, on a fresh private server each:
#   jsd         jsd --slots 2 as shipped (no GOGC/GOMEMLIMIT set), jobs
#               submitted on its unix socket as native "do" lines with "req"
#               and no id (jsd assigns one), every "queued" ack counted
#   beanstalkd  put into a tube nobody watches, every INSERTED counted
# The submissions are pipelined in batches of 1000 with at most 4000
# unacknowledged (jsd closes a connection that has more than 4096 replies
# waiting to be written: "does not read its replies"). Once every job is
# acknowledged, with the submitter still connected, qload reads the server's
# VmRSS from /proc/PID/status (no forced GC); bytes per job is the growth
# over the idle server's VmRSS, divided by the jobs, less the 16-byte
# payload. Helpers q_* are in w2.sh.

W4_needs="beanstalkd:beanstalkd"

bench_W4() {
  local n s out pid addr rss per
  n=$(pick 1000000 100000)
  Q_LOAD=$(go_helper qload)
  declare -A bpj=()
  for s in jsd beanstalkd; do
    rss=- per=- pid="" addr=""
    case "$s" in
      jsd) q_jsd "$BENCH_TMP/w4/jsd" && pid=$Q_JSD_PID addr=$Q_JSD_SOCK ;;
      beanstalkd) q_beanstalkd "$BENCH_TMP/w4/beanstalkd" && pid=$Q_BS_PID addr=$Q_BS_ADDR ;;
    esac
    if [ -z "$addr" ]; then
      out="server did not start"
    elif out=$(bounded 300 "$Q_LOAD" fill -system "$s" -addr "$addr" -pid "$pid" -n "$n" -window 4000 \
      -max-seconds 240 </dev/null 2>&1); then
      log "W4 $s: $out"
      rss=$(awk -v k="$(q_field rss_kb "$out")" 'BEGIN { printf "%.1f", k / 1024 }')
      per=$(q_field bytes_per_job "$out")
    else
      out="${out//$'\n'/; }"
    fi
    if [ "$s" = jsd ] && [ -s "$Q_JSD_LOG" ]; then log "W4 jsd printed: $(head -20 "$Q_JSD_LOG")"; fi
    if [ "$per" = - ]; then
      emit W4 "$s" rss - MB "failed: $out"
      emit W4 "$s" bytes_per_job - B "failed"
    else
      emit W4 "$s" rss "$rss" MB "VmRSS with $n jobs queued"
      emit W4 "$s" bytes_per_job "$per" B "beyond the 16-byte payload; $(q_field seconds "$out") s to queue them"
    fi
    bpj[$s]=$per
    [ -n "$pid" ] && stop_pid "$pid"
  done
  emit_ratio W4 jsd beanstalkd "${bpj[jsd]}" "${bpj[beanstalkd]}"
}
