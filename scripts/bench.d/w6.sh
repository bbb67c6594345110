# W6 slot round trip (sourced by scripts/bench): acquire+release of one slot
# through jsd on one connection of the native protocol, p50/p99 in
# microseconds, against a raw read+write of one byte on jsd's jobserver FIFO;
# also the same round trip on a fresh connection each time (jsd_connect),
# which is what every jsrun pays; and the floor, the same two line exchanges
# with a Go process that only echoes them (echo: what a round trip through
# any daemon costs on this machine before the daemon does anything). The
# measuring program is slotrtt (Go, it speaks the protocol itself, importing
# nothing from the repository).

bench_W6() {
  local rtt
  rtt=$(go_helper slotrtt)
  bounded 120 "$rtt" -workload W6 -dir "$JS_DIR" -n "$(pick 20000 2000)" -warmup "$(pick 500 100)" \
    -max-seconds "$(pick 20 3)" </dev/null ||
    emit W6 jsd rtt_p50 - us "failed: slotrtt exited $?"
}
