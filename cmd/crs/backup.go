package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"crs/fhir/store/sqlite"
)

// backupCommand runs "crs backup [--store sqlite:<path>] <file>": a consistent
// copy of a SQLite store, taken while the server runs.
func backupCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	spec := fs.String("store", env("CRS_STORE", "sqlite:./data/crs.db"), "the SQLite store to copy (CRS_STORE)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: crs backup [--store sqlite:<path>] <new file>\n\nCopies the store consistently while crs serves it (SQLite VACUUM INTO).\nTo restore: stop crs, copy the file to the store's path, remove <path>-wal and <path>-shm, start crs.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: crs backup [--store sqlite:<path>] <new file>")
	}
	path, ok := strings.CutPrefix(*spec, "sqlite:")
	if !ok || path == "" {
		return fmt.Errorf("crs backup copies SQLite stores (--store sqlite:<path>); back up MongoDB with mongodump or its snapshots")
	}
	dst := fs.Arg(0)
	if err := sqlite.Backup(context.Background(), path, dst); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backed up %s to %s\n", path, dst)
	return nil
}
