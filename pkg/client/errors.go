package client

import (
	"errors"
	"syscall"
)

func isConnRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}

// FDLimitHint is what a client tells its user when jsd refused the
// connection with wire.CodeFDLimit.
const FDLimitHint = "jsd is at its open-file limit; raise its limit (ulimit -n, or LimitNOFILE= in its service unit, before jsd starts) " +
	"or close clients (idle connections, workers); jsd serves new connections again as soon as descriptors free up"
