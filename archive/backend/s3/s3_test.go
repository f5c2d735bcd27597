package s3_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/backendtest"
	"codeberg.org/planb/planb/archive/backend/s3"
	"codeberg.org/planb/planb/archive/backend/s3/s3test"
)

func TestParseLocation(t *testing.T) {
	tests := []struct {
		in      string
		want    s3.Location
		wantErr string
	}{
		{"s3:https://s3.example.eu/bucket/some/prefix", s3.Location{"https", "s3.example.eu", "bucket", "some/prefix"}, ""},
		{"s3:https://s3.example.eu/bucket", s3.Location{"https", "s3.example.eu", "bucket", ""}, ""},
		{"s3:https://s3.example.eu/bucket/", s3.Location{"https", "s3.example.eu", "bucket", ""}, ""},
		{"s3:http://127.0.0.1:9000/b/p/", s3.Location{"http", "127.0.0.1:9000", "b", "p"}, ""},
		{"https://s3.example.eu/bucket", s3.Location{}, `does not start with "s3:"`},
		{"s3:ftp://s3.example.eu/bucket", s3.Location{}, `scheme "ftp"`},
		{"s3:https:///bucket", s3.Location{}, "no host"},
		{"s3:https://s3.example.eu", s3.Location{}, "no bucket"},
		{"s3:https://s3.example.eu/", s3.Location{}, "no bucket"},
		{"s3:https://key:secret@s3.example.eu/b", s3.Location{}, "credentials do not belong"},
		{"s3:https://s3.example.eu/b/p?x=1", s3.Location{}, "unexpected query"},
		{"s3:https://s3.example.eu/b/a//c", s3.Location{}, `bad prefix "a//c"`},
		{"s3:https://s3.example.eu/b/a/../c", s3.Location{}, `bad prefix "a/../c"`},
	}
	for _, tt := range tests {
		got, err := s3.ParseLocation(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseLocation(%q) = %+v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseLocation(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if back, err := s3.ParseLocation(got.String()); err != nil || back != got {
			t.Errorf("ParseLocation(%q.String() = %q) = %+v, %v", tt.in, got.String(), back, err)
		}
	}
}

func TestPlaintextNeedsOption(t *testing.T) {
	opts := s3.Options{Location: "s3:http://127.0.0.1:1/bucket"}
	_, err := s3.Open(t.Context(), opts)
	if err == nil || !strings.Contains(err.Error(), "plain http needs the insecure-plaintext option") {
		t.Errorf("Open(%q) = %v, want an error about plain http", opts.Location, err)
	}
	opts.AccessKeyID = "only-the-key"
	opts.InsecurePlaintext = true
	_, err = s3.Open(t.Context(), opts)
	if err == nil || !strings.Contains(err.Error(), "must be given together") {
		t.Errorf("Open with only an access key id = %v, want an error about the secret", err)
	}
}

func TestBackend(t *testing.T) {
	srv := s3test.Start(t)
	var n atomic.Int64
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		opts := srv.Options(fmt.Sprintf("suite/%d", n.Add(1)))
		b, err := s3.Create(t.Context(), opts)
		if err != nil {
			t.Fatalf("Create(%q) = %v", opts.Location, err)
		}
		return b
	})
}

func TestCreateOpen(t *testing.T) {
	srv := s3test.Start(t)
	ctx := t.Context()
	opts := srv.Options("repo/one")

	if _, err := s3.Open(ctx, opts); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("Open(%q) of an empty prefix = %v, want ErrNotExist", opts.Location, err)
	}
	b, err := s3.Create(ctx, opts)
	if err != nil {
		t.Fatalf("Create(%q) = %v", opts.Location, err)
	}
	if got := b.Location(); got != opts.Location {
		t.Errorf("Location() = %q, want %q", got, opts.Location)
	}
	cfg := backend.Handle{Type: backend.ConfigFile}
	if err := b.Save(ctx, cfg, bytes.NewReader([]byte("cfg"))); err != nil {
		t.Fatalf("Save(config) = %v", err)
	}
	pack := backend.Handle{Type: backend.PackFile, Name: "abcdef"}
	if err := b.Save(ctx, pack, bytes.NewReader([]byte("pack"))); err != nil {
		t.Fatalf("Save(%v) = %v", pack, err)
	}
	if _, err := s3.Create(ctx, opts); !errors.Is(err, os.ErrExist) {
		t.Errorf("second Create(%q) = %v, want os.ErrExist", opts.Location, err)
	}
	b2, err := s3.Open(ctx, opts)
	if err != nil {
		t.Fatalf("Open(%q) = %v", opts.Location, err)
	}
	got, err := backend.ReadAll(ctx, b2, pack)
	if err != nil || string(got) != "pack" {
		t.Errorf("ReadAll(%v) = %q, %v; want %q", pack, got, err, "pack")
	}

	// The objects are laid out as documented, under the prefix.
	for _, f := range []string{"repo/one/config", "repo/one/data/ab/abcdef"} {
		if _, err := os.Stat(srv.Dir + "/" + srv.Bucket + "/" + f); err != nil {
			t.Errorf("object %q: %v", f, err)
		}
	}

	// Create makes a missing bucket.
	opts2 := srv.Options("")
	opts2.Location = strings.Replace(opts2.Location, "/"+srv.Bucket, "/newbucket", 1)
	if _, err := s3.Create(ctx, opts2); err != nil {
		t.Errorf("Create(%q) with a new bucket = %v", opts2.Location, err)
	}
	if fi, err := os.Stat(srv.Dir + "/newbucket"); err != nil || !fi.IsDir() {
		t.Errorf("bucket folder after Create: %v", err)
	}
}

// permanent is the method by which the retry package recognises errors
// not worth retrying.
type permanent interface{ Permanent() bool }

func TestRefusals(t *testing.T) {
	srv := s3test.Start(t)
	ctx := t.Context()
	opts := srv.Options("repo")
	b, err := s3.Create(ctx, opts)
	if err != nil {
		t.Fatalf("Create(%q) = %v", opts.Location, err)
	}
	if err := b.Save(ctx, backend.Handle{Type: backend.ConfigFile}, bytes.NewReader([]byte("cfg"))); err != nil {
		t.Fatalf("Save(config) = %v", err)
	}

	bad := opts
	bad.SecretAccessKey = "wrong"
	_, err = s3.Open(ctx, bad)
	var p permanent
	if err == nil || !errors.As(err, &p) || !p.Permanent() || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
		t.Errorf("Open with a wrong secret = %v, want a permanent SignatureDoesNotMatch error", err)
	}

	// A stopped server gives a transient error.
	srv.Stop()
	_, err = b.Stat(ctx, backend.Handle{Type: backend.ConfigFile})
	if err == nil || errors.As(err, &p) || errors.Is(err, backend.ErrNotExist) {
		t.Errorf("Stat with the server stopped = %v, want a transient error", err)
	}
	if err != nil && !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Stat with the server stopped = %v, want it to say the connection was refused", err)
	}
}
