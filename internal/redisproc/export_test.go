package redisproc

// WithOnThread returns opts with f run on the thread that forks the
// redis-server, just before the fork.
func WithOnThread(opts Options, f func()) Options {
	opts.onThread = f
	return opts
}
