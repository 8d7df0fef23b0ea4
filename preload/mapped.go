package preload

// Mapped reports whether the library (any file named libkadiag_keepalive*)
// is mapped into the process: the loader honoured LD_PRELOAD. kadiag
// exporter asks this of every process with TCP sockets on every scan.
// Reading another user's /proc/PID/maps needs root or CAP_SYS_PTRACE.
func Mapped(pid int) (bool, error) {
	ok, _, err := mapped(pid, "")
	return ok, err
}
