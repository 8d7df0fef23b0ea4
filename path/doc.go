// Package path measures how long the real network path between two hosts
// keeps an idle TCP flow, and what it does with the flow's packets after it
// forgot it (reset, silent drop, or heal), in both directions.
//
// One end is the counterpart (Server, `kadiag path serve`) on the far side;
// the other is the measurement (Measure, `kadiag path HOST:PORT`). The client
// opens, at the start, two or more connections for every idle duration of a
// log-spaced grid between Config.Min and Config.Max; each idles for its
// duration and is then tested once: to-client, the counterpart sends after
// the idle, timed on its own clock from the connection's last packet (the
// failure of a late reply); to-server, the client sends and the counterpart
// answers. A control connection that exchanges data every few seconds
// carries the counterpart's notes ("sent on connection 17") and measures the
// round-trip time from which every test's deadline is a few RTTs, so a silent
// drop is told in well under a second instead of TCP's fifteen minutes. The
// measurement ends as soon as every direction is bracketed: the timeout T is
// observed in about (1 + precision) × T.
//
// Without a counterpart (a plain TCP server, detected by its silence at the
// handshake) only to-server is measured, with a kernel keepalive probe sent
// at the chosen idle, so nothing is written into the server's protocol; a
// server that closes idle connections itself is reported with its limit.
package path
