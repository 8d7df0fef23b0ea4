package capture

// seqState is the sequence state of one direction of a flow, the subset of
// Wireshark's tcp_flow_t that decides keep-alives, keep-alive ACKs, zero
// window probes and retransmissions. nextseq 0 means "not known yet", as in
// Wireshark.
type seqState struct {
	nextseq uint32
	lastack uint32
	window  uint32
	// keepAlive: the last segment this way was flagged a keep-alive (the
	// peer's keep-alive ACK rule looks at it).
	keepAlive bool
}

// wsMarks are the flags Wireshark's sequence analysis gives one segment.
type wsMarks struct {
	keepAlive       bool // tcp.analysis.keep_alive
	keepAliveAck    bool // tcp.analysis.keep_alive_ack
	zeroWindowProbe bool // tcp.analysis.zero_window_probe
	// notAdvanced: data (or SYN/FIN) below the next expected sequence
	// number; a retransmission unless the probe classifier says probe.
	notAdvanced bool
}

// wiresharkMarks is a port of Wireshark's tcp_analyze_sequence_number
// (epan/dissectors/packet-tcp.c), for the flags kadiag reports, of segment s
// sent in fwd's direction (rev is the other); then it advances fwd as
// Wireshark does. It reads nothing but its arguments, so its flags can be
// held against tshark's segment by segment (TestWiresharkMarks).
func wiresharkMarks(fwd, rev *seqState, s *segment) wsMarks {
	var m wsMarks
	synFinRst := s.flags&(flagSYN|flagFIN|flagRST) != 0
	// Wireshark checks in this order; a zero window probe ends the checks.
	m.zeroWindowProbe = s.seglen == 1 && s.seq == fwd.nextseq && rev.window == 0
	if !m.zeroWindowProbe {
		m.keepAlive = s.seglen <= 1 && !synFinRst && s.seq == fwd.nextseq-1
		m.keepAliveAck = s.seglen == 0 && !synFinRst && s.window != 0 && s.window == fwd.window &&
			s.seq == fwd.nextseq && s.ack == fwd.lastack && rev.keepAlive
		if s.seglen > 0 || s.flags&(flagSYN|flagFIN) != 0 {
			// A segment starting one below nextseq with more than one byte
			// is new data after a keep-alive, not a retransmission.
			m.notAdvanced = fwd.nextseq != 0 && int32(s.seq-fwd.nextseq) < 0 &&
				!(s.seglen > 1 && fwd.nextseq-1 == s.seq)
		}
	}
	next := s.seq + s.seglen
	if s.flags&(flagSYN|flagFIN) != 0 {
		next++
	}
	if !m.zeroWindowProbe && (int32(next-fwd.nextseq) > 0 || fwd.nextseq == 0) {
		fwd.nextseq = next
	}
	fwd.window = s.window
	fwd.lastack = s.ack
	fwd.keepAlive = m.keepAlive
	return m
}
