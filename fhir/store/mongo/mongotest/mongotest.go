// Package mongotest starts an in-process MongoDB-wire server for tests:
// FerretDB with its SQLite handler in a temporary directory, on 127.0.0.1.
// It answers a subset of MongoDB (no transactions, no $lookup, no change
// streams; $elemMatch on sub-documents is wrong), which the mongo backend keeps
// to.
package mongotest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/FerretDB/FerretDB/ferretdb"
)

var (
	once     sync.Once
	uri      string
	startErr error
	counter  atomic.Int64
)

// URI returns the address of the test process's FerretDB (started on first
// use) with a database name no other caller gets.
func URI(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		dir, err := os.MkdirTemp("", "crs-ferretdb-")
		if err != nil {
			startErr = err
			return
		}
		f, err := ferretdb.New(&ferretdb.Config{
			Listener:  ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
			Handler:   "sqlite",
			SQLiteURL: "file:" + dir + "/",
			Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			startErr = err
			return
		}
		go func() { _ = f.Run(context.Background()) }()
		uri = f.MongoDBURI()
	})
	if startErr != nil {
		t.Fatalf("start FerretDB: %v", startErr)
	}
	return Fresh(uri)
}

// Fresh names a new database on the server at base.
func Fresh(base string) string {
	u, _ := url.Parse(base)
	u.Path = fmt.Sprintf("/crs_test_%d_%d", os.Getpid(), counter.Add(1))
	return u.String()
}
