package repo_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"codeberg.org/planb/planb/archive/backend/mem"
	"codeberg.org/planb/planb/archive/pack"
	"codeberg.org/planb/planb/archive/repo/repotest"
	"codeberg.org/planb/planb/dedup"
)

// TestSaverStreams: small blobs added to several streams at once, in
// turn, share frames only with blobs of their own stream, also when more
// streams are open than the saver fills groups for; every blob reads back.
func TestSaverStreams(t *testing.T) {
	for _, streams := range []int{4, 12} {
		t.Run(fmt.Sprint(streams), func(t *testing.T) {
			ctx := t.Context()
			r := repotest.New(t, mem.New())
			s := r.NewSaver(ctx)
			rnd := rand.New(rand.NewPCG(1, uint64(streams)))
			const perStream = 200
			stream := make(map[dedup.ID]int)
			data := make(map[dedup.ID][]byte)
			bytesOf := make([]int, streams)
			for range perStream {
				for k := range streams {
					b := make([]byte, 1000+rnd.IntN(4000)) // below bigBlob: grouped
					for i := range b {
						b[i] = byte(rnd.Uint32())
					}
					id := dedup.Hash(b)
					if _, err := s.AddTo(fmt.Sprintf("folder %d", k), pack.DataBlob, id, b); err != nil {
						t.Fatal(err)
					}
					stream[id], data[id] = k, b
					bytesOf[k] += len(b)
				}
			}
			if _, err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			type frame struct {
				pack uint32
				off  uint32
			}
			owner := make(map[frame]int)
			frames := make([]int, streams)
			for id, k := range stream {
				loc, ok := r.Index().Lookup(id)
				if !ok {
					t.Fatalf("blob of stream %d not indexed", k)
				}
				f := frame{loc.Pack, loc.FrameOffset}
				if o, ok := owner[f]; !ok {
					owner[f] = k
					frames[k]++
				} else if o != k {
					t.Fatalf("a frame holds blobs of streams %d and %d", o, k)
				}
				got, err := r.LoadBlob(ctx, id)
				if err != nil || !bytes.Equal(got, data[id]) {
					t.Fatalf("LoadBlob: %v (equal %v)", err, bytes.Equal(got, data[id]))
				}
			}
			if streams <= 8 {
				// Each stream's groups were filled to the target size.
				for k, n := range frames {
					if want := (bytesOf[k] + 256<<10 - 1) / (256 << 10); n > want {
						t.Errorf("stream %d: %d frames for %d bytes, want %d", k, n, bytesOf[k], want)
					}
				}
			}
		})
	}
}
