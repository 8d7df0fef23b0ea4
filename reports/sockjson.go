package reports

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/kadiag/kadiag/inspect"
)

// appendSocket appends sk exactly as encoding/json encodes it (field order
// and names from inspect.Socket's tags, omitempty where they say so, the
// same string escaping): reflection costs more than the scan itself on a
// host with 100,000 sockets. TestAppendSocketIsEncodingJSON holds the two
// byte for byte, so a field added to Socket fails it until added here.
func appendSocket(b []byte, sk *inspect.Socket) ([]byte, error) {
	b = append(b, `{"fd":`...)
	b = strconv.AppendInt(b, int64(sk.FD), 10)
	b = append(b, `,"inode":`...)
	b = strconv.AppendUint(b, sk.Inode, 10)
	b = appendField(b, "family", sk.Family)
	b = appendField(b, "protocol", sk.Protocol)
	if sk.Netns != "" {
		b = appendField(b, "netns", sk.Netns)
	}
	b = appendField(b, "state", sk.State)
	b = appendField(b, "local", sk.Local)
	b = appendField(b, "remote", sk.Remote)
	k := &sk.Keepalive
	b = append(b, `,"keepalive":{"enabled":`...)
	b = strconv.AppendBool(b, k.Enabled)
	b = appendInt(b, "idle_s", int64(k.IdleS))
	b = appendInt(b, "interval_s", int64(k.IntervalS))
	b = appendInt(b, "count", int64(k.Count))
	b = appendInt(b, "user_timeout_ms", int64(k.UserTimeoutMs))
	if k.UserTimeoutUnsupported {
		b = append(b, `,"user_timeout_unsupported":true`...)
	}
	b = append(b, `,"timer_armed":`...)
	b = strconv.AppendBool(b, k.TimerArmed)
	b = appendInt(b, "next_probe_ms", k.NextProbeMs)
	if k.IdleLowerBound {
		b = append(b, `,"idle_lower_bound":true`...)
	}
	b = appendInt(b, "probes_sent", int64(k.ProbesSent))
	b = appendField(b, "source", string(k.Source))
	b = append(b, '}')
	b = appendField(b, "verdict", string(sk.Verdict))
	b = appendField(b, "reason", sk.Reason)
	b = appendInt(b, "dead_peer_s", int64(sk.DeadPeerS))
	b = appendField(b, "timer", sk.Timer)
	b = appendInt(b, "timer_expires_ms", sk.TimerExpiresMs)
	b = appendInt(b, "timer_retrans", int64(sk.TimerRetrans))
	b = appendInt(b, "last_data_recv_ms", sk.LastDataRecvMs)
	b = appendInt(b, "last_ack_recv_ms", sk.LastAckRecvMs)
	b = appendInt(b, "uid", int64(sk.UID))
	b = appendInt(b, "recv_q", int64(sk.RecvQ))
	b = appendInt(b, "send_q", int64(sk.SendQ))
	b = append(b, `,"conntrack":`...)
	if sk.Conntrack == nil {
		b = append(b, "null"...)
	} else {
		c, err := json.Marshal(sk.Conntrack)
		if err != nil {
			return b, err
		}
		b = append(b, c...)
	}
	return append(b, '}'), nil
}

func appendInt(b []byte, name string, v int64) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}

func appendField(b []byte, name, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

// appendString appends v as a JSON string. Plain printable ASCII goes as
// it is; anything else (control bytes, invalid UTF-8, and <, >, & which
// encoding/json escapes for HTML) takes encoding/json's own path.
func appendString(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(v) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, v...)
	return append(b, '"')
}
