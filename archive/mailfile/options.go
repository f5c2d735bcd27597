package mailfile

import "log/slog"

// Options configures sources and sinks. A nil *Options means the defaults.
type Options struct {
	// Logger receives warnings (skipped files, unrepresentable keywords).
	// Nil discards them.
	Logger *slog.Logger
	// Hostname is used in the unique names of Maildir files the sink writes.
	// Empty means os.Hostname.
	Hostname string
}

func (o *Options) logger() *slog.Logger {
	if o == nil || o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}
