package kvstore

import (
	"context"
	"errors"
	"testing"

	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/protobuf/proto"
)

type user struct {
	Name string `json:"name"`
	Age  int    `json:"age"`
}

func TestJSONSerdeRoundTripsAndRejectsGarbage(t *testing.T) {
	var s Serde[user] = &JSONSerde[user]{}
	b, err := s.Serialize(user{"ann", 41})
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.Deserialize(b)
	if err != nil || u != (user{"ann", 41}) {
		t.Fatalf("round trip: %+v, %v", u, err)
	}
	if _, err := s.Deserialize([]byte("{not json")); err == nil {
		t.Fatal("garbage deserialized without an error")
	}
}

func TestProtoSerdeRoundTripsAndRejectsGarbage(t *testing.T) {
	s, err := Proto(func() *pb.Version { return &pb.Version{} }, WithDeterministic())
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Serialize(&pb.Version{Term: 3, Index: 1200})
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Deserialize(b)
	if err != nil || !proto.Equal(v, &pb.Version{Term: 3, Index: 1200}) {
		t.Fatalf("round trip: %v, %v", v, err)
	}
	// a fresh message each time: decoding does not merge into the last one
	v2, _ := s.Deserialize(nil)
	if v2.GetTerm() != 0 || v2 == v {
		t.Fatalf("Deserialize reused a message: %v", v2)
	}
	if _, err := s.Deserialize([]byte{0xff, 0xff, 0xff}); err == nil {
		t.Fatal("garbage deserialized without an error")
	}
	if _, err := Proto[*pb.Version](nil); err == nil {
		t.Fatal("Proto with a nil factory: no error")
	}
	if _, err := Proto(func() *pb.Version { return nil }); err == nil {
		t.Fatal("Proto with a factory returning nil: no error")
	}
}

func TestWrapOnSetDeserializesAndSkipsUndecodable(t *testing.T) {
	var got []user
	fn := WrapOnSet[user](&JSONSerde[user]{}, func(key []byte, v user) { got = append(got, v) })
	fn([]byte("k"), []byte(`{"name":"bo","age":7}`))
	fn([]byte("k"), []byte(`garbage`))
	if len(got) != 1 || got[0] != (user{"bo", 7}) {
		t.Fatalf("typed hook saw %+v", got)
	}
	var deleted string
	WrapOnDelete[user](func(key []byte) { deleted = string(key) })([]byte("gone"))
	if deleted != "gone" {
		t.Fatalf("typed delete hook saw %q", deleted)
	}
}

// A typed Range over local storage stops at the first value that does not
// deserialize, with an error naming the key (seed 004).
func TestTypedRangeStopsOnFirstDeserializationError(t *testing.T) {
	st := NewMemoryStorage()
	ctx := context.Background()
	st.Set(ctx, []byte("a"), []byte(`{"name":"a"}`))
	st.Set(ctx, []byte("b"), []byte(`corrupt`))
	st.Set(ctx, []byte("c"), []byte(`{"name":"c"}`))
	rc := NewResourceClient[user](&Client{storage: st}, &JSONSerde[user]{})
	var keys []string
	var errs []error
	for kv, err := range rc.Range(ctx, KeyConstraint{}, QueryOptions{}) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		keys = append(keys, string(kv.Key))
	}
	if len(keys) != 1 || keys[0] != "a" || len(errs) != 1 {
		t.Fatalf("typed range yielded keys %v and errors %v; want [a] then one error", keys, errs)
	}
	if _, err := rc.Get(ctx, []byte("b")); err == nil {
		t.Fatal("typed Get of a corrupt value: no error")
	}
	if _, err := rc.Get(ctx, []byte("zz")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("typed Get of a missing key: %v, want ErrNotFound", err)
	}
}

func TestTypedBatchWithUnserializableValueWritesNothing(t *testing.T) {
	rc := NewResourceClient[chan int](&Client{}, &JSONSerde[chan int]{})
	err := rc.Batch().Put([]byte("k"), make(chan int)).Execute(context.Background())
	if err == nil {
		t.Fatal("a batch holding a value JSON cannot encode executed")
	}
}
