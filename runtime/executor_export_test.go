package runtime

// SetOutputLimit lowers the per-stream capture cap so tests need not write 64 MiB.
func SetOutputLimit(e *Executor, n int) { e.outputLimit = n }
