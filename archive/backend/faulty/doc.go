// Package faulty is a backend.Backend wrapper for tests that makes a
// configurable fraction of calls fail with ErrInjected, the way a flaky
// network and an overloaded object store do.
//
// A failing call fails in one of the ways a remote store can: Save before
// sending anything, midway through reading its reader, or after the file
// was stored (the answer was lost); Load at once or midway through the
// returned reader; Remove before or after removing; List before or after
// reporting some files; Stat at once. Which calls fail, and how, follows
// from the seed: the same sequence of calls meets the same faults.
// Location and Close never fail. Options.Types limits the faults to some
// file types (only the lock files, say), and SetRate turns them on and off
// while the backend is in use.
package faulty
