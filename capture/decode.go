package capture

import (
	"encoding/binary"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Link types kadiag reads beyond those gopacket names.
const (
	linkTypeRawOpenBSD = layers.LinkType(12)  // DLT_RAW on some systems
	linkTypeRawBSDOS   = layers.LinkType(14)  // DLT_RAW on BSD/OS
	linkTypeIPv4       = layers.LinkType(228) // LINKTYPE_IPV4
	linkTypeIPv6       = layers.LinkType(229) // LINKTYPE_IPV6
)

// decoder turns a captured frame into a TCP segment without allocating:
// one DecodingLayerParser per first layer, sharing the layer values.
type decoder struct {
	eth       layers.Ethernet
	dot1q     layers.Dot1Q
	sll       layers.LinuxSLL
	sll2      layers.LinuxSLL2
	loop      layers.Loopback
	ip4       layers.IPv4
	ip6       layers.IPv6
	ip6ext    layers.IPv6ExtensionSkipper
	tcp       layers.TCP
	parsers   map[gopacket.LayerType]*gopacket.DecodingLayerParser
	decoded   []gopacket.LayerType
	lastType  layers.LinkType
	lastFirst gopacket.LayerType
}

func newDecoder() *decoder {
	d := &decoder{parsers: map[gopacket.LayerType]*gopacket.DecodingLayerParser{}, decoded: make([]gopacket.LayerType, 0, 8)}
	for _, first := range []gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeLinuxSLL,
		layers.LayerTypeLinuxSLL2, layers.LayerTypeLoopback, layers.LayerTypeIPv4, layers.LayerTypeIPv6} {
		p := gopacket.NewDecodingLayerParser(first, &d.eth, &d.dot1q, &d.sll, &d.sll2, &d.loop,
			&d.ip4, &d.ip6, &d.ip6ext, &d.tcp)
		// Anything that is not TCP over IP (ARP, UDP, ICMP, IP fragments)
		// simply ends the parse.
		p.IgnoreUnsupported = true
		d.parsers[first] = p
	}
	return d
}

// firstLayer maps a link type to the layer its frames start with; false for
// link types kadiag cannot read.
func firstLayer(lt layers.LinkType, data []byte) (gopacket.LayerType, bool) {
	switch lt {
	case layers.LinkTypeEthernet:
		return layers.LayerTypeEthernet, true
	case layers.LinkTypeLinuxSLL:
		return layers.LayerTypeLinuxSLL, true
	case layers.LinkTypeLinuxSLL2:
		return layers.LayerTypeLinuxSLL2, true
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		return layers.LayerTypeLoopback, true
	case linkTypeIPv4:
		return layers.LayerTypeIPv4, true
	case linkTypeIPv6:
		return layers.LayerTypeIPv6, true
	case layers.LinkTypeRaw, linkTypeRawOpenBSD, linkTypeRawBSDOS:
		// Raw IP: the version nibble says which.
		if len(data) > 0 && data[0]>>4 == 6 {
			return layers.LayerTypeIPv6, true
		}
		return layers.LayerTypeIPv4, true
	}
	return 0, false
}

// decodeResult says what a frame turned out to be.
type decodeResult int

const (
	notTCP       decodeResult = iota // parsed fine, not TCP over IP
	isTCP                            // seg is filled in
	truncatedTCP                     // TCP over IP, but cut before the end of the TCP header
	badLinkType                      // a link type kadiag does not read
)

// decode fills seg from one frame. wireLen is the frame's original length.
func (d *decoder) decode(lt layers.LinkType, data []byte, seg *segment) decodeResult {
	first, ok := firstLayer(lt, data)
	if !ok {
		return badLinkType
	}
	p := d.parsers[first]
	err := p.DecodeLayers(data, &d.decoded)
	var ipStart, ipLen int
	var haveIP, haveTCP bool
	for _, t := range d.decoded {
		switch t {
		case layers.LayerTypeIPv4:
			haveIP = true
			ipStart = cap(data) - cap(d.ip4.Contents)
			ipLen = int(d.ip4.Length)
			copy(seg.src.addr[:], v4InV6Prefix)
			copy(seg.dst.addr[:], v4InV6Prefix)
			copy(seg.src.addr[12:], d.ip4.SrcIP.To4())
			copy(seg.dst.addr[12:], d.ip4.DstIP.To4())
		case layers.LayerTypeIPv6:
			haveIP = true
			ipStart = cap(data) - cap(d.ip6.Contents)
			ipLen = 40 + int(d.ip6.Length)
			if d.ip6.Length == 0 { // jumbogram or TSO: trust what was captured
				ipLen = len(data) - ipStart
			}
			copy(seg.src.addr[:], d.ip6.SrcIP.To16())
			copy(seg.dst.addr[:], d.ip6.DstIP.To16())
		case layers.LayerTypeTCP:
			haveTCP = true
		}
	}
	if !haveTCP {
		// Wireshark does not analyse a TCP segment whose header (options
		// included) was cut by the snaplen; neither does kadiag, so both
		// count the same probes. Such packets are counted and reported.
		if haveIP && err != nil && d.nextIsTCP() {
			return truncatedTCP
		}
		return notTCP
	}
	tcp := d.tcp.Contents[:cap(d.tcp.Contents)]
	tcpStart := cap(data) - cap(tcp)
	hdr := int(tcp[12]>>4) * 4
	seglen := ipStart + ipLen - tcpStart - hdr
	if seglen < 0 {
		seglen = 0
	}
	seg.src.port = binary.BigEndian.Uint16(tcp[0:2])
	seg.dst.port = binary.BigEndian.Uint16(tcp[2:4])
	seg.seq = binary.BigEndian.Uint32(tcp[4:8])
	seg.ack = binary.BigEndian.Uint32(tcp[8:12])
	seg.flags = tcp[13]
	seg.window = uint32(binary.BigEndian.Uint16(tcp[14:16]))
	seg.seglen = uint32(seglen)
	seg.iplen = uint32(ipLen)
	return isTCP
}

var v4InV6Prefix = []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}

// nextIsTCP reports whether the IP header decoded last announced TCP.
func (d *decoder) nextIsTCP() bool {
	switch d.decoded[len(d.decoded)-1] {
	case layers.LayerTypeIPv4:
		return d.ip4.Protocol == layers.IPProtocolTCP && d.ip4.FragOffset == 0
	case layers.LayerTypeIPv6:
		return d.ip6.NextHeader == layers.IPProtocolTCP
	}
	return false
}
