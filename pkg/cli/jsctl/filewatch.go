package jsctl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fsnotify/fsnotify"
	"github.com/js-toolkit/js/pkg/cli/cmdline"
)

// fileWatch tells when a file may have changed, without polling: inotify
// (fsnotify) on the file's directory, which sees jsd's atomic renames (a
// watch on the file itself would follow the replaced inode). While the
// directory does not exist, it watches the nearest ancestor that does and
// moves down as the missing directories appear.
type fileWatch struct {
	path    string // the file, absolute
	dir     string // its directory
	watched string // the directory watched now: dir or an ancestor
	w       *fsnotify.Watcher
}

func watchFile(path string) (*fileWatch, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, cmdline.WithHint(fmt.Errorf("watch %s: %w", path, err), ExitFailed,
			"the inotify limits may be reached: see sysctl fs.inotify.max_user_instances and max_user_watches")
	}
	fw := &fileWatch{path: abs, dir: filepath.Dir(abs), w: w}
	if err := fw.arm(); err != nil {
		w.Close()
		return nil, err
	}
	return fw, nil
}

func (fw *fileWatch) close() { fw.w.Close() }

// arm watches the file's directory, or its nearest existing ancestor. It
// checks again after each new watch: a directory created meanwhile would
// otherwise go unseen.
func (fw *fileWatch) arm() error {
	for {
		target := fw.dir
		for {
			if fi, err := os.Stat(target); err == nil && fi.IsDir() {
				break
			}
			parent := filepath.Dir(target)
			if parent == target {
				break
			}
			target = parent
		}
		if target == fw.watched {
			return nil
		}
		if fw.watched != "" {
			_ = fw.w.Remove(fw.watched) // may be gone with its directory
			fw.watched = ""
		}
		if err := fw.w.Add(target); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // removed meanwhile: look again
			}
			return fmt.Errorf("watch %s: %w", target, err)
		}
		fw.watched = target
	}
}

// changed reports whether an event may have changed the file (or made it
// reachable), moving the watch as directories appear or go.
func (fw *fileWatch) changed(ev fsnotify.Event) (bool, error) {
	name := filepath.Clean(ev.Name)
	if fw.watched == fw.dir {
		switch {
		case name == fw.path:
			return true, nil
		case name == fw.dir && ev.Has(fsnotify.Remove|fsnotify.Rename):
			// The directory itself went away: watch what is left.
			return true, fw.arm()
		}
		return false, nil
	}
	// Watching an ancestor: a directory on the way may have appeared
	// (or the ancestor itself may have gone).
	old := fw.watched
	if err := fw.arm(); err != nil {
		return false, err
	}
	return fw.watched != old, nil
}

// next waits until the file may have changed (nil) or ctx is done.
func (fw *fileWatch) next(ctx context.Context) error {
	for {
		select {
		case ev, ok := <-fw.w.Events:
			if !ok {
				return errors.New("file watch closed")
			}
			if ch, err := fw.changed(ev); ch || err != nil {
				return err
			}
		case err, ok := <-fw.w.Errors:
			if !ok {
				return errors.New("file watch closed")
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost: look again at everything.
				return fw.arm()
			}
			return fmt.Errorf("watch %s: %w", fw.path, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
