// Command planb keeps an encrypted, deduplicated archive of mailboxes and
// exports it back as mbox, Maildir or .eml files.
//
// Usage:
//
//	planb [global flags] COMMAND [flags] [arguments]
//
// The repository comes from --repo or PLANB_REPOSITORY; its password from
// PLANB_PASSWORD_FILE (--password-file), --password-command
// (PLANB_PASSWORD_COMMAND), PLANB_PASSWORD or a terminal prompt, in that
// order. There is deliberately no --password flag.
//
// Each command lives in its own file as an options struct and a
// runX(ctx, opts, g) function that tests can call; main.go alone maps
// errors to exit codes: 0 done, 1 failed, 2 usage error, 3 finished with
// some messages or folders skipped. progress.go is the only place that
// draws progress bars. The command-line tests are testscript sessions in
// testdata/script.
package main
