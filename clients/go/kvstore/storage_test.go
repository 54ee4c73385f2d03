package kvstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

type storageCase struct {
	name string
	open func(t *testing.T) Storage
}

func storages() []storageCase {
	return []storageCase{
		{"memory", func(t *testing.T) Storage { return NewMemoryStorage() }},
		{"bolt", func(t *testing.T) Storage {
			s, err := OpenBoltStorage(filepath.Join(t.TempDir(), "kv.db"), "")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}},
	}
}

func collectRange(t *testing.T, s Storage, c KeyConstraint, o QueryOptions) []KeyValue {
	t.Helper()
	var out []KeyValue
	for kv, err := range s.Range(context.Background(), c, o) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, kv)
	}
	return out
}

// Random sets, deletes and batches against a map; every Range (random
// bounds, limits, prefixes) must equal the map's sorted selection.
func TestStorageMatchesSortedMapModel(t *testing.T) {
	for _, sc := range storages() {
		t.Run(sc.name, func(t *testing.T) {
			seed := time.Now().UnixNano()
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewSource(seed))
			s := sc.open(t)
			ctx := context.Background()
			model := map[string]string{}
			key := func() string { return fmt.Sprintf("%c/%03d", 'a'+rng.Intn(4), rng.Intn(700)) }
			for i := 0; i < 3000; i++ {
				switch r := rng.Intn(10); {
				case r < 6:
					k, v := key(), fmt.Sprint(i)
					if err := s.Set(ctx, []byte(k), []byte(v)); err != nil {
						t.Fatal(err)
					}
					model[k] = v
				case r < 8:
					k := key()
					if err := s.Delete(ctx, []byte(k)); err != nil {
						t.Fatal(err)
					}
					delete(model, k)
				default:
					var items []KeyValue
					for j := 0; j < 20; j++ {
						k := key()
						if rng.Intn(3) == 0 {
							items = append(items, KeyValue{Key: []byte(k)})
							delete(model, k)
						} else {
							items = append(items, KeyValue{Key: []byte(k), Value: []byte(fmt.Sprint(i, j))})
							model[k] = fmt.Sprint(i, j)
						}
					}
					if err := s.(BatchStorage).ApplyBatch(ctx, items); err != nil {
						t.Fatal(err)
					}
				}
			}
			var keys []string
			for k := range model {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for q := 0; q < 200; q++ {
				var c KeyConstraint
				switch rng.Intn(3) {
				case 0:
					c = Prefix(fmt.Sprintf("%c/", 'a'+rng.Intn(5)))
				case 1:
					a, b := key(), key()
					if a > b {
						a, b = b, a
					}
					c = KeyConstraint{Start: []byte(a), End: []byte(b)}
				case 2:
					if rng.Intn(2) == 0 {
						c.Start = []byte(key())
					} else {
						c.End = []byte(key())
					}
				}
				limit := 0
				if rng.Intn(3) == 0 {
					limit = 1 + rng.Intn(400)
				}
				var want []string
				for _, k := range keys {
					if c.contains([]byte(k)) && (limit == 0 || len(want) < limit) {
						want = append(want, k)
					}
				}
				got := collectRange(t, s, c, QueryOptions{Limit: limit})
				if len(got) != len(want) {
					t.Fatalf("range %q..%q limit %d: %d entries, want %d", c.Start, c.End, limit, len(got), len(want))
				}
				for i, kv := range got {
					if string(kv.Key) != want[i] || string(kv.Value) != model[want[i]] {
						t.Fatalf("range entry %d: %q=%q, want %q=%q", i, kv.Key, kv.Value, want[i], model[want[i]])
					}
				}
			}
			for _, k := range keys {
				v, err := s.Get(ctx, []byte(k))
				if err != nil || string(v) != model[k] {
					t.Fatalf("Get(%q) = %q, %v; want %q", k, v, err, model[k])
				}
			}
			if _, err := s.Get(ctx, []byte("absent")); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get of a missing key: %v, want ErrNotFound", err)
			}
		})
	}
}

// The loop body of a Range may write to the same storage (hooks and
// callers do): no deadlock, and the range ends.
func TestStorageRangeBodyMayWriteToTheStorage(t *testing.T) {
	for _, sc := range storages() {
		t.Run(sc.name, func(t *testing.T) {
			s := sc.open(t)
			ctx := context.Background()
			for i := 0; i < 1000; i++ {
				s.Set(ctx, []byte(fmt.Sprintf("k%04d", i)), bytes.Repeat([]byte{'v'}, 100))
			}
			done := make(chan int)
			go func() {
				n := 0
				for kv, err := range s.Range(ctx, Prefix("k"), QueryOptions{}) {
					if err != nil {
						t.Error(err)
						break
					}
					n++
					// grow the store while reading it
					s.Set(ctx, append([]byte("z"), kv.Key...), bytes.Repeat([]byte{'w'}, 4096))
					s.Delete(ctx, kv.Key)
				}
				done <- n
			}()
			select {
			case n := <-done:
				if n != 1000 {
					t.Fatalf("range saw %d keys, want 1000", n)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("Range with writes in its body did not finish: deadlock")
			}
		})
	}
}

func TestStorageValuesAreCopies(t *testing.T) {
	for _, sc := range storages() {
		t.Run(sc.name, func(t *testing.T) {
			s := sc.open(t)
			ctx := context.Background()
			v := []byte("abc")
			s.Set(ctx, []byte("k"), v)
			v[0] = 'X'
			got, _ := s.Get(ctx, []byte("k"))
			if string(got) != "abc" {
				t.Fatalf("stored value changed with the caller's slice: %q", got)
			}
			got[0] = 'Y'
			again, _ := s.Get(ctx, []byte("k"))
			if string(again) != "abc" {
				t.Fatalf("stored value changed with a returned slice: %q", again)
			}
			if err := s.Set(ctx, []byte("empty"), []byte{}); err != nil {
				t.Fatal(err)
			}
			if e, err := s.Get(ctx, []byte("empty")); err != nil || len(e) != 0 {
				t.Fatalf("empty value: %q, %v", e, err)
			}
		})
	}
}

func TestBoltStorageKeepsDataAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	s, err := OpenBoltStorage(path, "ns")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s.ApplyBatch(ctx, []KeyValue{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b"), Value: []byte("2")}})
	s.Delete(ctx, []byte("a"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenBoltStorage(path, "ns")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := collectRange(t, s, KeyConstraint{}, QueryOptions{})
	if len(got) != 1 || string(got[0].Key) != "b" || string(got[0].Value) != "2" {
		t.Fatalf("after reopen: %v, want only b=2", got)
	}
}

func TestPrefixBounds(t *testing.T) {
	p := Prefix("ab")
	for k, want := range map[string]bool{"ab": true, "ab\xff\xff": true, "abc": true, "aa": false, "ac": false, "a": false} {
		if p.contains([]byte(k)) != want {
			t.Fatalf("Prefix(ab) contains %q = %v, want %v", k, !want, want)
		}
	}
	if e := Prefix("a\xff"); string(e.End) != "b" {
		t.Fatalf("Prefix(a\\xff).End = %q, want b", e.End)
	}
	if e := Prefix("\xff\xff"); e.End != nil || !e.contains([]byte("\xff\xff\x00")) {
		t.Fatalf("Prefix(\\xff\\xff) = %+v, want unbounded end", e)
	}
	if e := Prefix(""); e.Start != nil || e.End != nil {
		t.Fatalf("Prefix(\"\") = %+v, want everything", e)
	}
}
