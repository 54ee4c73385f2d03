package integration

// GET /kv?prefix= and /kv?start=&end= (docs/range.md): pages in key order
// chained by the cursor, keys_only, expiry, and strict parameter parsing.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

type rangePage struct {
	Entries []struct {
		Key         string  `json:"key"`
		Value       *string `json:"value"`
		ExpiresAtMs uint64  `json:"expires_at_ms"`
	} `json:"entries"`
	Cursor        *string `json:"cursor"`
	ShardsCovered int     `json:"shards_covered"`
	TotalShards   int     `json:"total_shards"`
}

func TestHTTPRangePagesInKeyOrderWithTheCursorAndParsesStrictly(t *testing.T) {
	s := ephemeral(t)
	base := "http://" + s.http
	get := func(path string) (int, string) {
		r, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	var want []string
	for i := 0; i < 25; i++ {
		k := fmt.Sprintf("hr/%02d", i)
		mustPut(t, s, k, "v"+k)
		want = append(want, k)
	}
	mustPut(t, s, "hs/other", "x") // outside the prefix
	req, _ := http.NewRequest("PUT", base+"/kv/hr%2Fshort?ttl_ms=1", strings.NewReader("gone"))
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != 200 {
		t.Fatalf("PUT with ttl: %v %v", r, err)
	} else {
		r.Body.Close()
	}
	time.Sleep(20 * time.Millisecond)

	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		q := "/kv?prefix=hr%2F&limit=7"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		code, body := get(q)
		var p rangePage
		if code != 200 || json.Unmarshal([]byte(body), &p) != nil {
			t.Fatalf("GET %s: %d %s", q, code, body)
		}
		if p.ShardsCovered != p.TotalShards || len(p.Entries) > 7 {
			t.Fatalf("page %d: %s", pages, body)
		}
		for _, e := range p.Entries {
			if e.Value == nil || *e.Value != "v"+e.Key {
				t.Fatalf("entry %s has value %v", e.Key, e.Value)
			}
			got = append(got, e.Key)
		}
		if p.Cursor == nil {
			break
		}
		cursor = *p.Cursor
		if pages > 10 {
			t.Fatal("the cursor never ends")
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("paged prefix scan = %v, want %v", got, want)
	}
	code, body := get("/kv?start=hr%2F05&end=hr%2F08&keys_only=true&consistency=linearizable")
	if code != 200 || !strings.Contains(body, `"key":"hr/05"`) || !strings.Contains(body, `"key":"hr/07"`) ||
		strings.Contains(body, `"key":"hr/08"`) || strings.Contains(body, `"value"`) {
		t.Fatalf("bounded keys-only scan: %d %s", code, body)
	}
	for _, bad := range []struct{ q, want string }{
		{"/kv", "a range needs prefix, start or end"},
		{"/kv?prefix=a&limt=3", "unknown query parameter 'limt'"},
		{"/kv?prefix=a&prefix=b", "given more than once"},
		{"/kv?prefix=a&limit=0", "limit '0' is invalid"},
		{"/kv?prefix=a&limit=10001", "limit '10001' is invalid"},
		{"/kv?prefix=a&keys_only=yes", "keys_only 'yes' is invalid"},
		{"/kv?prefix=a&cursor=zz", "cursor is invalid"},
		{"/kv?prefix=a&cursor=02016100", "continuation token"},
		{"/kv?prefix=a&consistency=often", "unknown consistency"},
	} {
		code, body := get(bad.q)
		if code != 400 || !strings.Contains(body, bad.want) {
			t.Errorf("GET %s = %d %s; want 400 naming %q", bad.q, code, body, bad.want)
		}
	}
}
