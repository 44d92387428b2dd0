package apicheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestRecordsRoundTrip(t *testing.T) {
	log := filepath.Join(t.TempDir(), "requests.jsonl")
	if recs, err := ReadRecords(log); err != nil || recs != nil {
		t.Fatalf("missing log: %v %v", recs, err)
	}
	in := []Record{
		NewRecord("GET", "/api/v1/vm.info", nil, nil),
		NewRecord("PUT", "/api/v1/vm.snapshot", []byte("{ \"destination_url\" : \"file:///a<b>\" }\n"), nil),
		NewRecord("PUT", "/actions", []byte(`{"action_type":`), errors.New("PUT /actions: body: bad")),
	}
	for _, r := range in {
		if err := AppendRecord(log, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadRecords(log)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Body != nil || string(got[1].Body) != `{"destination_url":"file:///a<b>"}` ||
		string(got[2].Body) != `"{\"action_type\":"` || got[2].Error != "PUT /actions: body: bad" {
		t.Fatalf("round trip: %+v", got)
	}
	data, _ := os.ReadFile(log)
	if strings.Contains(string(data), `"body"`+":null") || strings.Count(string(data), "\n") != 3 || strings.Contains(strings.SplitN(string(data), "\n", 2)[0], "body") {
		t.Fatalf("an empty body must be omitted, one line per record:\n%s", data)
	}

	if err := os.WriteFile(log, append(data, []byte("{\"method\":\"GET\",\"pth\":\"/\"}\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRecords(log); err == nil || !strings.Contains(err.Error(), "line 4") {
		t.Fatalf("malformed line: %v", err)
	}
}

func TestAppendRecordConcurrent(t *testing.T) {
	log := filepath.Join(t.TempDir(), "requests.jsonl")
	const n = 64
	big := strings.Repeat("x", 8<<10) // long lines, so interleaved writes would tear them
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			body := fmt.Sprintf(`{"i":%d,"pad":%q}`, i, big)
			if err := AppendRecord(log, NewRecord("PUT", "/x", []byte(body), nil)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	recs, err := ReadRecords(log)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != n {
		t.Fatalf("got %d records, want %d", len(recs), n)
	}
}
