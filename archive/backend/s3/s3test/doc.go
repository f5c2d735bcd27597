// Package s3test starts a real S3 server, versitygw, for tests.
//
// Tests call Start, which skips the test when versitygw is not installed
// (on PATH or in $(go env GOPATH)/bin) unless the environment variable
// PLANB_REQUIRE_S3=1 makes that a failure, as CI does. Install it with
//
//	go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
package s3test
