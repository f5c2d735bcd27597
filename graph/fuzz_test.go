package graph

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"

	"codeberg.org/planb/planb/archive"
)

// FuzzDeltaPage decodes arbitrary bytes as a page of a messages delta
// query, as Sync does: every flag a message maps to is a system flag or a
// keyword IMAP can carry, a next or delta link is followed only to the
// Graph endpoint's host, and the page's delta link survives the cursor.
func FuzzDeltaPage(f *testing.F) {
	f.Add([]byte(`{"@odata.context":"x","value":[{"@odata.type":"#microsoft.graph.message","id":"AAMk1","changeKey":"CQAAA","receivedDateTime":"2025-03-04T05:06:07Z","isRead":true,"isDraft":false,"flag":{"flagStatus":"flagged"},"categories":["Red category","(odd) {x}"]},{"id":"AAMk2","@removed":{"reason":"deleted"}}],"@odata.nextLink":"https://graph.microsoft.com/v1.0/users/a/mailFolders/f/messages/delta?$skiptoken=x"}`))
	f.Add([]byte(`{"value":[],"@odata.deltaLink":"https://graph.microsoft.com/v1.0/users/a/mailFolders/f/messages/delta?$deltatoken=y"}`))
	f.Add([]byte(`{"value":[{"id":"","categories":[" ","\\Seen","\u0000"],"isDraft":true,"receivedDateTime":null}]}`))
	f.Add([]byte(`{"value":[{"id":"x","receivedDateTime":"0001-01-01T00:00:00Z","flag":null}],"@odata.deltaLink":"http://evil/"}`))
	f.Add([]byte(`{"value":[],"@odata.nextLink":"https://graph.microsoft.com.evil.example/v1.0/x","@odata.deltaLink":"https://u@GRAPH.microsoft.com:443/v1.0/x"}`))
	f.Add([]byte(`{"value":[],"@odata.nextLink":"https://evil.example\\@graph.microsoft.com/","@odata.deltaLink":"https://Graph.Microsoft.com:443/v1.0/x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var page deltaPage
		if err := json.Unmarshal(b, &page); err != nil {
			return
		}
		for i := range page.Value {
			m := &page.Value[i]
			for _, fl := range flagsOf(m) {
				if strings.HasPrefix(fl, `\`) {
					switch fl {
					case archive.FlagSeen, archive.FlagFlagged, archive.FlagDraft:
						continue
					}
					t.Fatalf("flagsOf(%+v): system flag %q", m, fl)
				}
				if fl == "" {
					t.Fatalf("flagsOf(%+v): empty keyword", m)
				}
				for j := range len(fl) {
					if c := fl[j]; c <= ' ' || c == 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
						t.Fatalf("flagsOf(%+v): keyword %q holds %q", m, fl, c)
					}
				}
			}
		}
		// A link is followed only to the endpoint's host.
		gc := &Client{endpoint: "https://graph.microsoft.com", origin: "graph.microsoft.com:443"}
		for _, link := range []string{page.NextLink, page.DeltaLink} {
			err := gc.checkLink("link", link)
			u, perr := url.Parse(link)
			home := perr == nil && u.Scheme == "https" && u.User == nil && strings.EqualFold(u.Hostname(), "graph.microsoft.com") && (u.Port() == "" || u.Port() == "443")
			if (err == nil) != home {
				t.Fatalf("checkLink(%q) = %v", link, err)
			}
			if err != nil && !errors.Is(err, ErrForeignLink) && perr == nil {
				t.Fatalf("checkLink(%q) = %v, want ErrForeignLink", link, err)
			}
		}
		c := encodeCursor("folder", page.DeltaLink)
		id, link, ok := decodeCursor(c)
		if want := strings.HasPrefix(page.DeltaLink, "https://"); ok != want || ok && (id != "folder" || link != page.DeltaLink) {
			t.Fatalf("decodeCursor(encodeCursor(folder, %q)) = %q, %q, %v", page.DeltaLink, id, link, ok)
		}
	})
}
