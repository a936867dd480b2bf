package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// File modes of everything the disk provider creates (F9, CVE-2017-9868):
// stored messages and KV values may be private, so only the owner may read.
const (
	fileMode fs.FileMode = 0o600
	dirMode  fs.FileMode = 0o700
)

// privateFS forces fileMode/dirMode on what pebble creates on the real file
// system. pebble's vfs.Default creates files 0666 and directories 0755 minus
// the umask; chmod right after creation is safe because the data directory
// itself is 0700, so nobody else can open a file in the window.
type privateFS struct {
	vfs.FS
}

func (p privateFS) Unwrap() vfs.FS { return p.FS }

func (p privateFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := p.FS.Create(name, category)
	return f, chmodAfter(f, err, name, fileMode)
}

func (p privateFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := p.FS.OpenReadWrite(name, category, opts...)
	return f, chmodAfter(f, err, name, fileMode)
}

func (p privateFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := p.FS.ReuseForWrite(oldname, newname, category)
	return f, chmodAfter(f, err, newname, fileMode)
}

func (p privateFS) Lock(name string) (io.Closer, error) {
	c, err := p.FS.Lock(name)
	if err == nil {
		if cerr := os.Chmod(name, fileMode); cerr != nil {
			_ = c.Close()
			return nil, cerr
		}
	}
	return c, err
}

// MkdirAll makes new directories 0700 but leaves existing ones alone: the
// operator may have chosen the parent's mode deliberately.
func (p privateFS) MkdirAll(dir string, _ os.FileMode) error {
	return os.MkdirAll(dir, dirMode) // os applies the mode to each new level (minus umask)
}

func chmodAfter(f vfs.File, err error, name string, mode fs.FileMode) error {
	if err != nil {
		return err
	}
	if cerr := os.Chmod(name, mode); cerr != nil {
		_ = f.Close()
		return cerr
	}
	return nil
}

// pebbleLogger routes pebble's printf-style messages to the injected logger.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug("pebble: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error("pebble: " + fmt.Sprintf(format, args...))
}

// Fatalf is called by pebble only when it cannot continue safely (for
// example a failed WAL fsync, after which the page cache may hold lies).
// pebble's default exits the process; a library must not, so it panics
// with the reason, which the broker's top level reports.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error("pebble fatal: " + msg)
	panic(errors.New("pebble: " + msg))
}
