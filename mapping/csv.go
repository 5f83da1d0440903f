package mapping

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"sort"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// Encoding names the character encoding of a partner's file.
type Encoding string

// The encodings a partner file may be in.
const (
	UTF8        Encoding = "utf-8"        // the default; a byte-order mark is skipped
	Windows1252 Encoding = "windows-1252" // converted to UTF-8 as it is read
)

// Columns says which columns a source's CSV file must and may have. Names are
// matched case-insensitively, ignoring surrounding spaces.
type Columns struct {
	Required []string
	Optional []string
}

// Record is one data row of a CSV file: its values by column (the spelling of
// Columns) and the line it starts on.
type Record struct {
	Line   int
	Values map[string]string
	Raw    []string // the fields as read, for the held-for-review Task
}

// Get returns the value of column name, trimmed.
func (r Record) Get(name string) string { return strings.TrimSpace(r.Values[name]) }

// CSVReader reads a partner CSV file as a stream of records: a UTF-8
// byte-order mark is skipped, CRLF and LF are both line ends, quoted fields may
// hold commas and newlines, blank lines are skipped, and empty trailing columns
// (as spreadsheets write them) are ignored. Memory does not grow with the file.
type CSVReader struct {
	r      *csv.Reader
	header []string // column name (Columns spelling) of each field; "" for an ignored empty one
	Header []string // the header as read
}

// NewCSVReader reads the header of r and checks it against cols: missing
// required columns and unknown columns are one file-level error naming them
// all. An empty file is an error too.
func NewCSVReader(r io.Reader, enc Encoding, cols Columns) (*CSVReader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if bom, err := br.Peek(3); err == nil && bytes.Equal(bom, []byte{0xEF, 0xBB, 0xBF}) {
		_, _ = br.Discard(3)
	}
	var src io.Reader = br
	switch enc {
	case UTF8, "":
	case Windows1252:
		src = charmap.Windows1252.NewDecoder().Reader(br)
	default:
		return nil, fmt.Errorf("unknown encoding %q: use utf-8 or windows-1252", enc)
	}
	cr := csv.NewReader(src)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = false
	head, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("the file is empty: it has no header row")
	}
	if err != nil {
		return nil, fmt.Errorf("the header row cannot be read: %v", err)
	}
	known := map[string]string{}
	for _, c := range append(append([]string{}, cols.Required...), cols.Optional...) {
		known[strings.ToLower(c)] = c
	}
	out := &CSVReader{r: cr, Header: head}
	seen := map[string]bool{}
	var unknown, dup []string
	for i, h := range head {
		h = strings.TrimSpace(h)
		if i == 0 {
			h = strings.TrimPrefix(h, "\uFEFF")
		}
		if !utf8.ValidString(h) {
			return nil, fmt.Errorf("the header row is not UTF-8: if the file is Windows-1252 (as Excel saves CSV), give --encoding windows-1252")
		}
		if h == "" {
			out.header = append(out.header, "")
			continue
		}
		name, ok := known[strings.ToLower(h)]
		switch {
		case !ok:
			unknown = append(unknown, h)
		case seen[name]:
			dup = append(dup, h)
		}
		seen[name] = true
		out.header = append(out.header, name)
	}
	var missing []string
	for _, c := range cols.Required {
		if !seen[c] {
			missing = append(missing, c)
		}
	}
	var problems []string
	if len(missing) > 0 {
		problems = append(problems, "missing column(s) "+strings.Join(missing, ", "))
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		problems = append(problems, "unknown column(s) "+strings.Join(unknown, ", "))
	}
	if len(dup) > 0 {
		problems = append(problems, "repeated column(s) "+strings.Join(dup, ", "))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("wrong columns: %s; nothing was imported", strings.Join(problems, "; "))
	}
	return out, nil
}

// RowError is a row the importer rejected or held, with where and why.
type RowError struct {
	Line   int
	Field  string // the column, when one is at fault
	Reason string
}

func (e *RowError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Reason)
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
}

// Next returns the next record. io.EOF ends the file. A *RowError is a row
// that cannot be read as a record (the rest of the file can still be read);
// any other error is a broken file (unbalanced quotes) that ends the reading.
func (c *CSVReader) Next() (Record, error) {
	fields, err := c.r.Read()
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return Record{}, fmt.Errorf("line %d: the CSV cannot be read past here: %v", pe.StartLine, pe.Err)
		}
		return Record{}, err
	}
	line, _ := c.r.FieldPos(0)
	rec := Record{Line: line, Values: make(map[string]string, len(c.header)), Raw: fields}
	for i, f := range fields {
		if !utf8.ValidString(f) {
			return Record{Line: line}, &RowError{Line: line, Field: c.name(i), Reason: "the value is not UTF-8: if the file is Windows-1252 (as Excel saves CSV), give --encoding windows-1252"}
		}
		if i >= len(c.header) {
			if strings.TrimSpace(f) != "" {
				return Record{Line: line}, &RowError{Line: line, Reason: fmt.Sprintf("the row has %d fields but the header has %d columns", len(fields), len(c.header))}
			}
			continue
		}
		if c.header[i] != "" {
			rec.Values[c.header[i]] = f
		}
	}
	return rec, nil
}

func (c *CSVReader) name(i int) string {
	if i < len(c.header) {
		return c.header[i]
	}
	return ""
}

// Seen remembers the record references of a file, to find repeats, in about
// 16 bytes a reference (a 64-bit hash and the line), so that memory stays
// flat enough for files of millions of rows. Two references with the same
// hash would be reported as a repeat: at a million references the chance is
// about one in ten million.
type Seen struct{ lines map[uint64]int32 }

// Add records key on line; a key seen before returns the first line and true.
func (s *Seen) Add(key string, line int) (int, bool) {
	if s.lines == nil {
		s.lines = map[uint64]int32{}
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	sum := h.Sum64()
	if first, ok := s.lines[sum]; ok {
		return int(first), true
	}
	s.lines[sum] = int32(line)
	return 0, false
}

// Batches reads every record of cr, parses each (a *RowError rejects the row
// and the rest proceeds) and hands the parsed rows to batch, size at a time;
// progress, when set, hears the rows read after each batch. A broken file
// ends the reading after the rows before it are stored.
func Batches[T any](cr *CSVReader, rep *Report, size int, parse func(Record) (T, *RowError), batch func([]T) error, progress func(rows int)) error {
	var rows []T
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		err := batch(rows)
		rows = rows[:0]
		if progress != nil {
			progress(rep.Rows)
		}
		return err
	}
	for {
		rec, err := cr.Next()
		if errors.Is(err, io.EOF) {
			return flush()
		}
		var re *RowError
		if errors.As(err, &re) {
			rep.Rows++
			rep.Reject(re)
			continue
		}
		if err != nil {
			if ferr := flush(); ferr != nil {
				return ferr
			}
			return err
		}
		rep.Rows++
		row, rerr := parse(rec)
		if rerr != nil {
			rep.Reject(rerr)
			continue
		}
		rows = append(rows, row)
		if len(rows) >= size {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}
