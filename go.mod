module github.com/js-toolkit/js

go 1.26

require (
	github.com/alecthomas/kong v1.17.0
	github.com/fsnotify/fsnotify v1.10.1
	github.com/mattn/go-isatty v0.0.24
	go.etcd.io/bbolt v1.5.0
	golang.org/x/sys v0.45.0
)
