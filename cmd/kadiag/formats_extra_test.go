package main

import "testing"

// extraFormatCommands lists the commands merged after the formats test was
// written (capture, simulate), with their exit code and JUnit failures.
func extraFormatCommands(t *testing.T) []struct {
	args     []string
	code     int
	failures int
} {
	return []struct {
		args     []string
		code     int
		failures int
	}{
		{[]string{"capture", "--read", "../../testdata/capture/eth.pcap"}, 1, 1},
		{[]string{"capture", "--read", "../../testdata/capture/ipv6.pcap", "--max-idle", "aws-nat"}, 0, 0},
	}
}
