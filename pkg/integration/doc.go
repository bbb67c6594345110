// Package integration holds the end-to-end tests: they build the real
// binaries once, start a real jsd in a temp dir per test, and drive it with
// jsrun, jsctl and real peers (GNU make). Only test files live here.
package integration
