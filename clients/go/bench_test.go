package norikv_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	norikv "github.com/norikv/norikv-go"
	"github.com/norikv/norikv-go/testing/ephemeral"
)

// End-to-end client calls against a real ephemeral server on this machine
// (skipped without a server binary). RunParallel uses GOMAXPROCS
// goroutines; -cpu raises it.
func benchClient(b *testing.B) *norikv.Client {
	srv := ephemeral.StartT(b, nil)
	c, err := norikv.NewClient(context.Background(), norikv.DefaultClientConfig([]string{srv.GRPCAddr}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// cpuTime is this process's CPU time (user + system), without the server's.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportClientCPU adds the client's CPU time per operation, a figure that
// other load on the machine does not inflate.
func reportClientCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "client-cpu-us/op")
}

func BenchmarkClientPutParallel(b *testing.B) {
	c := benchClient(b)
	val := make([]byte, 256)
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime()
	defer func() { reportClientCPU(b, start) }()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			k := []byte("bench-put-" + strconv.FormatInt(n.Add(1)%100000, 10))
			if _, err := c.Put(ctx, k, val, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkClientGetParallel(b *testing.B) {
	c := benchClient(b)
	ctx := context.Background()
	const keys = 1000
	for i := 0; i < keys; i++ {
		if _, err := c.Put(ctx, []byte("bench-get-"+strconv.Itoa(i)), make([]byte, 256), nil); err != nil {
			b.Fatal(err)
		}
	}
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime()
	defer func() { reportClientCPU(b, start) }()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := []byte("bench-get-" + strconv.FormatInt(n.Add(1)%keys, 10))
			if _, err := c.Get(ctx, k, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkClientRangeScan scans 20000 keys of 100-byte values spread over
// every shard (one op = one key yielded), with the server's default page of
// 1000 entries: the figure is the scan's keys per second (1/ns-per-op).
func BenchmarkClientRangeScan(b *testing.B) {
	c := benchClient(b)
	ctx := context.Background()
	const keys = 20000
	val := make([]byte, 100)
	for i := 0; i < keys; i++ {
		if _, err := c.Put(ctx, []byte("bench-range-"+strconv.Itoa(100000+i)), val, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for n < b.N {
		for kv, err := range c.Range(ctx, &norikv.RangeOptions{Prefix: []byte("bench-range-")}) {
			if err != nil {
				b.Fatal(err)
			}
			_ = kv
			n++
			if n >= b.N {
				break
			}
		}
	}
}
