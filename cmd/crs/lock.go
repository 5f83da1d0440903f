package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// storeLock is the exclusive lock a serving crs holds on its SQLite file, so a
// second 'crs serve' on the same file refuses to start (two writers would
// interleave their audit chains). It is an flock on <file>.lock holding the
// holder's pid; the kernel releases it when the process ends, however it ends.
type storeLock struct{ f *os.File }

// lockStore takes the lock for the SQLite file at path, or says which process
// holds it.
func lockStore(path string) (*storeLock, error) {
	name := path + ".lock"
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		buf := make([]byte, 32)
		n, _ := f.ReadAt(buf, 0)
		f.Close()
		holder := strings.TrimSpace(string(buf[:n]))
		if _, perr := strconv.Atoi(holder); perr != nil {
			holder = "another process"
		} else {
			holder = "process " + holder
		}
		return nil, fmt.Errorf("the store %s is in use by %s (it holds %s): stop it first, or give another --store", path, holder, name)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &storeLock{f: f}, nil
}

// release drops the lock.
func (l *storeLock) release() error {
	if l == nil {
		return nil
	}
	return l.f.Close()
}
