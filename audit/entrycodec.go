package audit

import (
	"encoding/json"
	"fmt"
)

// EncodeEntry is the JSON of e as a journal line carries it (without the
// line's checksum and sequence): what a write stores, in its own store
// transaction, as its pending audit record.
func EncodeEntry(e Entry) ([]byte, error) { return encodeEntry(e) }

// DecodeEntry reads an entry encoded by EncodeEntry.
func DecodeEntry(b []byte) (Entry, error) {
	var l entryLine
	if err := json.Unmarshal(b, &l); err != nil {
		return Entry{}, err
	}
	if l.ID == "" || (l.Record == nil && len(l.Canonical) == 0) {
		return Entry{}, fmt.Errorf("audit entry %q has no id or no content", b)
	}
	return Entry{ID: l.ID, Recorded: l.Recorded, Canonical: l.Canonical, record: l.Record}, nil
}
