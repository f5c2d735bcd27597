package imap

import (
	"testing"

	"codeberg.org/planb/planb/archive"
)

func TestTargetMailbox(t *testing.T) {
	dot := &target{delim: '.', prefix: "", special: map[string]string{archive.Sent: "Sent"}}
	slash := &target{delim: '/', prefix: "", special: map[string]string{archive.Sent: "Sent Items", archive.Trash: "Deleted Items"}}
	prefixed := &target{delim: '.', prefix: "INBOX.", special: map[string]string{}}
	mapped := &target{delim: '/', special: map[string]string{archive.Sent: "Sent Items"}, mo: MapOptions{Map: map[string]string{"Sent": "Archive/Gesendet", "Old": "Archive/Old"}}}
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
	}
	for _, tt := range tests {
		if got := tt.t.mailbox(tt.f); got != tt.want {
			t.Errorf("mailbox(%q, delim %q prefix %q) = %q, want %q", tt.f.Path, tt.t.delim, tt.t.prefix, got, tt.want)
		}
	}
}
