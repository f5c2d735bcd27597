package imap

import (
	"fmt"
	"testing"

	goimap "github.com/emersion/go-imap/v2"

	"codeberg.org/planb/planb/archive"
)

func TestTargetMailbox(t *testing.T) {
	dot := &target{delim: '.', prefix: "", special: map[string]string{archive.Sent: "Sent"}}
	slash := &target{delim: '/', prefix: "", special: map[string]string{archive.Sent: "Sent Items", archive.Trash: "Deleted Items"}}
	prefixed := &target{delim: '.', prefix: "INBOX.", special: map[string]string{}}
	mapped := &target{delim: '/', special: map[string]string{archive.Sent: "Sent Items"}, mo: MapOptions{Map: map[string]string{"Sent": "Archive/Gesendet", "Old": "Archive/Old"}}}
	bridgeSpecial := map[string]string{archive.Sent: "Sent", archive.Drafts: "Drafts", archive.Trash: "Trash", archive.Junk: "Spam",
		archive.Archive: "Archive", archive.All: "All Mail", archive.Flagged: "Starred"}
	bridge := &target{delim: '/', bridge: true, special: bridgeSpecial}
	bridgeMapped := &target{delim: '/', bridge: true, special: bridgeSpecial, mo: MapOptions{Map: map[string]string{"Old": "Labels/Old"}}}
	gmailAll := &target{delim: '/', special: map[string]string{archive.All: "[Gmail]/All Mail", archive.Sent: "[Gmail]/Sent Mail"}}
	tests := []struct {
		t    *target
		f    archive.Folder
		want string
	}{
		{dot, archive.Folder{Path: "INBOX"}, "INBOX"},
		{dot, archive.Folder{Path: "inbox/Sub"}, "INBOX.Sub"},
		{dot, archive.Folder{Path: "Archiv/2024/Q1"}, "Archiv.2024.Q1"},
		{dot, archive.Folder{Path: "v1.2"}, "v1_2"},
		{dot, archive.Folder{Path: "Sent Items", SpecialUse: archive.Sent}, "Sent"},
		{dot, archive.Folder{Path: "Trash", SpecialUse: archive.Trash}, "Trash"},
		{slash, archive.Folder{Path: "Sent", SpecialUse: archive.Sent}, "Sent Items"},
		{slash, archive.Folder{Path: "Trash", SpecialUse: archive.Trash}, "Deleted Items"},
		{slash, archive.Folder{Path: "Entwürfe/日本語"}, "Entwürfe/日本語"},
		{slash, archive.Folder{Path: "v1.2"}, "v1.2"},
		{prefixed, archive.Folder{Path: "Projekte/Alt"}, "INBOX.Projekte.Alt"},
		{prefixed, archive.Folder{Path: "INBOX"}, "INBOX"},
		{mapped, archive.Folder{Path: "Sent", SpecialUse: archive.Sent}, "Archive/Gesendet"},
		{mapped, archive.Folder{Path: "Old/2019"}, "Archive/Old/2019"},
		{mapped, archive.Folder{Path: "Older"}, "Older"},
		// Proton Mail Bridge: user folders under Folders/, special-use
		// into Bridge's own, views (All Mail, Starred) never.
		{bridge, archive.Folder{Path: "INBOX"}, "INBOX"},
		{bridge, archive.Folder{Path: "Projects/2026/Q1"}, "Folders/Projects/2026/Q1"},
		{bridge, archive.Folder{Path: "Sent Items", SpecialUse: archive.Sent}, "Sent"},
		{bridge, archive.Folder{Path: "Junk E-mail", SpecialUse: archive.Junk}, "Spam"},
		{bridge, archive.Folder{Path: "Archiv", SpecialUse: archive.Archive}, "Archive"},
		{bridge, archive.Folder{Path: "[Gmail]/All Mail", SpecialUse: archive.All}, "Folders/[Gmail]/All Mail"},
		{bridge, archive.Folder{Path: "Starred", SpecialUse: archive.Flagged}, "Folders/Starred"},
		{bridge, archive.Folder{Path: "Folders/Kept"}, "Folders/Kept"},
		{bridge, archive.Folder{Path: "Labels/Work"}, "Labels/Work"},
		{bridgeMapped, archive.Folder{Path: "Old/2019"}, "Labels/Old/2019"},
		// A view is restored as a plain folder on any server.
		{gmailAll, archive.Folder{Path: "[Gmail]/All Mail", SpecialUse: archive.All}, "[Gmail]/All Mail"},
		{gmailAll, archive.Folder{Path: "All", SpecialUse: archive.All}, "All"},
	}
	for _, tt := range tests {
		if got := tt.t.mailbox(tt.f); got != tt.want {
			t.Errorf("mailbox(%q, delim %q prefix %q) = %q, want %q", tt.f.Path, tt.t.delim, tt.t.prefix, got, tt.want)
		}
	}
}

func TestAlreadyExists(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeAlreadyExists, Text: "Mailbox exists"}, true},
		{&goimap.Error{Type: goimap.StatusResponseTypeNo, Text: "Mailbox already exists"}, true},   // Cyrus
		{&goimap.Error{Type: goimap.StatusResponseTypeNo, Text: "Permission denied"}, false},       // a real refusal
		{&goimap.Error{Type: goimap.StatusResponseTypeBad, Text: "Mailbox already exists"}, false}, // BAD is no answer to trust
		{fmt.Errorf("create: %w", &goimap.Error{Type: goimap.StatusResponseTypeNo, Text: "already exists"}), true},
	} {
		if got := alreadyExists(c.err); got != c.want {
			t.Errorf("alreadyExists(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
