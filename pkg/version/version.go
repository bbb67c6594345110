// Package version is the toolkit's version, set at build time with
// -ldflags "-X github.com/js-toolkit/js/pkg/version.Version=...".
package version

// Version of jsd, jsrun, jsworker and jsctl.
var Version = "0.1.0-dev"
