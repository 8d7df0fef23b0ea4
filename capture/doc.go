// Package capture proves on the wire whether TCP keepalive probes go out:
// it reads pcap and pcapng files (or captures live with AF_PACKET inside a
// process's network namespace), follows every bidirectional TCP flow and
// reports per flow how many keepalive probes were sent and answered, how
// regular they were and how long the flow stayed silent, with a verdict
// against a middlebox's idle limit.
//
// Keepalive probes and their ACKs are recognised exactly as Wireshark's TCP
// analysis flags them (tcp.analysis.keep_alive and
// tcp.analysis.keep_alive_ack), so the counts can be checked against tshark.
// Reading is streamed: memory grows with the number of flows, never with the
// number of packets.
package capture
