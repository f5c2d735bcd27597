// Package backendtest is the conformance suite every backend.Backend must
// pass.
//
// A backend's test is a few lines:
//
//	func TestBackend(t *testing.T) {
//		backendtest.Run(t, func(t *testing.T) backend.Backend {
//			return mem.New()
//		})
//	}
//
// Run calls newBackend once per sub-test and expects an empty backend each
// time; it closes the backend when the sub-test ends.
//
// Beyond the contract written on backend.Backend, the suite pins down what
// every backend does at the edges: handles are checked with
// backend.Handle.Valid (errors wrap backend.ErrInvalidHandle); Save reads
// its reader from the start; Load fails (or its reader fails) when offset
// is beyond the end, and a range running past the end yields the bytes up
// to the end and then io.ErrUnexpectedEOF; List and Stat report the config
// file under the name "config"; fn passed to List may call the backend; a
// cancelled context fails every call with an error wrapping
// context.Canceled and changes nothing.
package backendtest
