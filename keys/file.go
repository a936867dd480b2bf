package keys

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Modes of what the package creates (reliability case F9, CVE-2017-9868):
// the secret lets anyone mint master keys, so nothing is group or world
// accessible. Modes of existing directories are left alone.
const (
	dirMode  = 0o700
	fileMode = 0o600
)

// writeTemp writes data to a new temporary file in dir and syncs it, so a
// rename or link of it publishes complete contents or nothing. os.CreateTemp
// creates it with fileMode (0600), which a umask cannot widen. The caller
// owns (and must remove) it.
func writeTemp(dir, name string, data []byte) (tmp string, err error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return "", err
	}
	tmp = f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		_ = f.Close()
		return "", err
	}
	if err = f.Sync(); err != nil {
		_ = f.Close()
		return "", err
	}
	if err = f.Close(); err != nil {
		return "", err
	}
	return tmp, nil
}

// writeFileAtomic replaces path with data: temp file, fsync, rename, fsync
// of the directory. A crash leaves either the old or the new file, never a
// torn one (reliability case F7), and the rename is durable once it returns.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := writeTemp(dir, filepath.Base(path), data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename or link in dir durable (POSIX needs an fsync of the
// directory for that).
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// readFileLimited reads a regular file of at most limit bytes, refusing a
// larger one instead of reading it into memory.
func readFileLimited(path string, limit int64) ([]byte, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, nil, err
	}
	if int64(len(data)) > limit {
		return nil, nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, info, nil
}

// isNotExist reports a missing file, however wrapped.
func isNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }
