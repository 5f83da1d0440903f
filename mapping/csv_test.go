package mapping_test

import (
	"errors"
	"io"
	"strings"
	"testing"

	"crs/mapping"
)

var testColumns = mapping.Columns{Required: []string{"A", "B"}, Optional: []string{"C"}}

// TestCSVReader: BOM, CRLF, quoted commas and newlines, blank lines, empty
// trailing columns, case-insensitive headers.
func TestCSVReader(t *testing.T) {
	in := "\uFEFFa, b ,C,,\r\n1,\"two, and\r\nmore\",3,,\r\n\r\n4,5,,,\r\n"
	r, err := mapping.NewCSVReader(strings.NewReader(in), mapping.UTF8, testColumns)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec.Get("A")+"|"+rec.Get("B")+"|"+rec.Get("C")+"@"+string(rune('0'+rec.Line)))
	}
	want := []string{"1|two, and\nmore|3@2", "4|5|@5"}
	if strings.Join(got, ";") != strings.Join(want, ";") {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// FuzzCSVReader: any bytes give records, row errors or a file error; never a
// panic.
func FuzzCSVReader(f *testing.F) {
	f.Add([]byte("A,B,C\n1,2,3\n"))
	f.Add([]byte("\xEF\xBB\xBFA,B\r\n\"x,\ny\",2\r\n\r\n"))
	f.Add([]byte("A,B\n\"unterminated\n"))
	f.Add([]byte("A,B\n1,2,3,4\nx\xe9,y\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, enc := range []mapping.Encoding{mapping.UTF8, mapping.Windows1252} {
			r, err := mapping.NewCSVReader(strings.NewReader(string(data)), enc, testColumns)
			if err != nil {
				continue
			}
			for range 10000 {
				_, err := r.Next()
				var re *mapping.RowError
				if err != nil && !errors.As(err, &re) {
					break
				}
			}
		}
	})
}
