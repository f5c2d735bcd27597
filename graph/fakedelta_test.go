package graph_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"codeberg.org/planb/planb/graph/graphtest"
)

// TestFakeDeltaJSON checks the properties the fake renders in a delta
// page: with $select, the selected ones beside @odata.type, @odata.etag
// and id; a removed message, only its type, id and @removed.
func TestFakeDeltaJSON(t *testing.T) {
	f := newFixture(t)
	mb := f.tenant.AddMailbox("alice@"+domain, "Alice")
	inbox := mb.WellKnown("inbox")
	received := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	keep := mb.AddMessage(inbox, graphtest.Message{MIME: []byte("Subject: a\r\n\r\na\r\n"), Received: received, IsRead: true, Flagged: true, Categories: []string{"Red category"}})
	gone := mb.AddMessage(inbox, graphtest.Message{MIME: []byte("Subject: b\r\n\r\nb\r\n"), Received: received})

	hc := f.srv.Client()
	resp, err := hc.PostForm(f.srv.URL()+"/"+tenantID+"/oauth2/v2.0/token", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}, "scope": {f.srv.URL() + "/.default"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil || tok.AccessToken == "" {
		t.Fatalf("token: %v, %q", err, tok.AccessToken)
	}
	type page struct {
		Value     []map[string]any `json:"value"`
		DeltaLink string           `json:"@odata.deltaLink"`
	}
	get := func(u string) page {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", u, resp.Status)
		}
		var p page
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keys := func(m map[string]any) string {
		var k []string
		for name := range m {
			k = append(k, name)
		}
		slices.Sort(k)
		return strings.Join(k, ",")
	}

	p := get(f.srv.URL() + "/v1.0/users/" + url.PathEscape(mb.Address) + "/mailFolders/" + url.PathEscape(inbox) +
		"/messages/delta?" + url.Values{"$select": {"isRead,flag,categories,receivedDateTime"}}.Encode())
	if len(p.Value) != 2 || p.DeltaLink == "" {
		t.Fatalf("first round: %d messages, delta link %q, want 2 and a link", len(p.Value), p.DeltaLink)
	}
	m := p.Value[0]
	if got, want := keys(m), "@odata.etag,@odata.type,categories,flag,id,isRead,receivedDateTime"; got != want {
		t.Errorf("message properties = %s, want %s", got, want)
	}
	b, _ := json.Marshal(m)
	if got, want := string(b), `{"@odata.etag":"W/\"CQAAABYAAAD00000001\"","@odata.type":"#microsoft.graph.message","categories":["Red category"],"flag":{"flagStatus":"flagged"},"id":"`+keep+`","isRead":true,"receivedDateTime":"2025-03-04T05:06:07Z"}`; got != want {
		t.Errorf("message = %s, want %s", got, want)
	}
	if got := p.Value[1]["categories"]; got == nil {
		t.Errorf("message without categories: categories = nil, want []")
	}

	mb.RemoveMessage(gone)
	p = get(p.DeltaLink)
	if len(p.Value) != 1 {
		t.Fatalf("second round: %d changes, want 1", len(p.Value))
	}
	b, _ = json.Marshal(p.Value[0])
	if got, want := string(b), `{"@odata.type":"#microsoft.graph.message","@removed":{"reason":"deleted"},"id":"`+gone+`"}`; got != want {
		t.Errorf("removed message = %s, want %s", got, want)
	}
}
