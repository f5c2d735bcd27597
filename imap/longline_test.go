package imap

import (
	"io"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
)

// TestSourceLongResponse: a server that answers LIST with 100 MB in one
// response (a line without end, a literal mailbox name, a quoted string
// running over lines) makes the source fail after reading a bounded part
// of it, not take it all into memory.
func TestSourceLongResponse(t *testing.T) {
	const total = 100 << 20
	chunk := strings.Repeat("x", 64<<10)
	chunkLines := strings.Repeat(strings.Repeat("y", 1022)+"\r\n", 64)
	tests := []struct {
		name  string
		start string // then total bytes of fill, then end
		fill  string
		end   string
	}{
		{"line", "* OK ", chunk, "\r\n"},
		{"literal", `* LIST () "/" {104857600}` + "\r\n", chunk, "\r\n"},
		{"quoted over lines", `* LIST () "/" "`, chunkLines, "\"\r\n"},
		{"flags", "* FLAGS (", strings.Repeat(`\Seen `, len(chunk)/6), ")\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			written := make(chan int64, 10) // by LIST answered
			f := &fakeServer{pre: "IMAP4rev1 AUTH=PLAIN SASL-IR", caps: "IMAP4rev1"}
			f.handle = func(tag, cmd string, c *fakeConn) []string {
				if !strings.HasPrefix(cmd, "LIST") {
					return []string{tag + " OK done"}
				}
				n, err := io.WriteString(c.w, tt.start)
				w := int64(n)
				for err == nil && w < total {
					n, err = io.WriteString(c.w, tt.fill)
					w += int64(n)
				}
				written <- w
				if err != nil {
					return []string{"<close>"}
				}
				return []string{strings.TrimSuffix(tt.end, "\r\n"), tag + " OK done"}
			}
			o := startFake(t, f)
			o.Retries, o.RetryDelay = 1, 10*time.Millisecond
			s, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			runtime.GC()
			base := heapBytes()
			peak := make(chan uint64)
			stop := make(chan struct{})
			go func() {
				var max uint64
				for {
					max = maxOf(max, heapBytes())
					select {
					case <-stop:
						peak <- max
						return
					case <-time.After(2 * time.Millisecond):
					}
				}
			}()
			start := time.Now()
			folders, err := s.Folders(t.Context())
			elapsed := time.Since(start)
			close(stop)
			grew := (<-peak - min(base, heapBytes())) >> 20
			var w int64
			select {
			case w = <-written:
			case <-time.After(30 * time.Second):
				t.Fatal("the server is still writing its answer")
			}
			t.Logf("%s: %v after %v; server wrote %d bytes; heap grew by %d MiB at most", tt.name, err, elapsed, w, grew)
			if err == nil || !strings.Contains(err.Error(), "longer than") {
				t.Errorf("Folders() = %d folders, %v; want an answer too long", len(folders), err)
			}
			if w > 40<<20 {
				t.Errorf("the server wrote %d bytes of one answer before the client hung up, want a bounded part", w)
			}
			if len(written) > 0 {
				t.Errorf("the source asked again: %d more answers", len(written))
			}
		})
	}
}

// heapBytes returns the bytes of the heap's objects, live or not yet
// collected.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func maxOf(a, b uint64) uint64 { return max(a, b) }
