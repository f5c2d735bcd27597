package mailfile

import (
	"slices"
	"sort"
	"strings"
	"testing"
)

func TestEscapeElem(t *testing.T) {
	tests := []struct {
		in      string
		allDots bool
		want    string
	}{
		{"..", false, "%2E."},
		{".", true, "%2E"},
		{"v1.2", true, "v1%2E2"},
		{"v1.2", false, "v1.2"},
		{".hidden", false, "%2Ehidden"},
		{"100%", false, "100%25"},
		{"%2E", true, "%252E"},
		{"a\x00b", false, "a%00b"},
	}
	for _, tt := range tests {
		if got := escapeElem(tt.in, tt.allDots); got != tt.want {
			t.Errorf("escapeElem(%q, %v) = %q, want %q", tt.in, tt.allDots, got, tt.want)
		}
		if got := unescapeElem(tt.want); got != tt.in {
			t.Errorf("unescapeElem(%q) = %q, want %q", tt.want, got, tt.in)
		}
	}
	// Foreign names keep a "%" that is not one of the three escapes.
	for _, s := range []string{"100%", "%zz", "a%2", "%41"} {
		if got := unescapeElem(s); got != s {
			t.Errorf("unescapeElem(%q) = %q, want it unchanged", s, got)
		}
	}
}

func FuzzEscapeElem(f *testing.F) {
	for _, s := range []string{"..", ".", "a.b", "%", "%2E", "%25", "x\x00", "Entw&APw-rfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.Contains(s, "/") || s == "" {
			return
		}
		for _, all := range []bool{false, true} {
			e := escapeElem(s, all)
			if e == "." || e == ".." || strings.HasPrefix(e, ".") || strings.ContainsRune(e, 0) || (all && strings.Contains(e, ".")) {
				t.Fatalf("escapeElem(%q, %v) = %q, not a safe name", s, all, e)
			}
			if got := unescapeElem(e); got != s {
				t.Fatalf("unescapeElem(escapeElem(%q, %v) = %q) = %q", s, all, e, got)
			}
		}
	})
}

func TestNaturalLess(t *testing.T) {
	names := []string{"10", "9", "1", "100", "2", "1.M10P1", "1.M9P1", "a", "01", "b2", "b10"}
	sort.Slice(names, func(i, j int) bool { return naturalLess(names[i], names[j]) })
	want := []string{"01", "1", "1.M9P1", "1.M10P1", "2", "9", "10", "100", "a", "b2", "b10"}
	if !slices.Equal(names, want) {
		t.Errorf("sorted = %q, want %q", names, want)
	}
}
