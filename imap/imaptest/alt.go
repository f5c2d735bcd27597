package imaptest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// StartAlt starts a server of the test's own in the "alt" flavour of
// scripts/dovecot.sh: "/" as the hierarchy separator and special-use
// folders named "Sent Items", "Deleted Items" and "Junk E-mail". It is
// stopped and removed when the test ends.
func StartAlt(t testing.TB) *Dovecot {
	t.Helper()
	script, err := Script()
	if err != nil {
		unavailable(t, err)
	}
	dir, err := os.MkdirTemp("", "planb-dovecot-alt-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "flavor"), []byte("alt\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &Dovecot{Dir: dir, script: script}
	users := []string{"planb:planb"}
	for i := 1; i <= maxUsers; i++ {
		users = append(users, fmt.Sprintf("t%d:pw-t%d", i, i))
	}
	if err := d.run(append([]string{"start"}, users...)...); err != nil {
		os.RemoveAll(dir)
		unavailable(t, err)
	}
	t.Cleanup(func() {
		d.stop()
		removeDir(d.Dir)
	})
	if err := d.readEnv(); err != nil {
		t.Fatal(err)
	}
	return d
}
