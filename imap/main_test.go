package imap

import (
	"os"
	"testing"

	"codeberg.org/planb/planb/archive/crypto"
	"codeberg.org/planb/planb/imap/imaptest"
)

func TestMain(m *testing.M) {
	crypto.SetTestKDF()
	code := m.Run()
	imaptest.StopShared()
	os.Exit(code)
}
