package capture

import (
	"encoding/binary"
	"errors"

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
	eth     layers.Ethernet
	dot1q   layers.Dot1Q
	sll     layers.LinuxSLL
	sll2    layers.LinuxSLL2
	loop    layers.Loopback
	ip4     layers.IPv4
	ip6     layers.IPv6
	ip6ext  layers.IPv6ExtensionSkipper
	tcp     tcpHeader
	parsers [len(firstLayers)]*gopacket.DecodingLayerParser
	decoded []gopacket.LayerType
}

// firstLayers are the layers a frame can start with, in the order of
// decoder.parsers.
var firstLayers = [...]gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeLinuxSLL,
	layers.LayerTypeLinuxSLL2, layers.LayerTypeLoopback, layers.LayerTypeIPv4, layers.LayerTypeIPv6}

func newDecoder() *decoder {
	d := &decoder{decoded: make([]gopacket.LayerType, 0, 8)}
	for i, first := range firstLayers {
		p := gopacket.NewDecodingLayerParser(first)
		// A slice indexed by layer type finds the next decoder faster than
		// the default map (gopacket's own advice for hot paths).
		p.SetDecodingLayerContainer(gopacket.DecodingLayerSparse(nil))
		for _, l := range []gopacket.DecodingLayer{&d.eth, &d.dot1q, &d.sll, &d.sll2, &d.loop, &d.ip4, &d.ip6, &d.ip6ext, &d.tcp} {
			p.AddDecodingLayer(l)
		}
		// Anything that is not TCP over IP (ARP, UDP, ICMP, IP fragments)
		// simply ends the parse.
		p.IgnoreUnsupported = true
		d.parsers[i] = p
	}
	return d
}

// tcpHeader is a gopacket DecodingLayer for the fixed TCP header alone.
// gopacket's TCP layer also parses every option into a slice, a quarter of
// the decoding time of a small segment; the sequence analysis reads no
// option, as Wireshark's does not. Its errors are gopacket's: a header
// shorter than 20 bytes or than its data offset is truncated.
type tcpHeader struct {
	// Contents is the header, options included; cap reaches the frame's end.
	Contents []byte
}

var (
	errTCPShort  = errors.New("TCP header cut before its end")
	errTCPOffset = errors.New("TCP data offset below 5")
)

func (h *tcpHeader) CanDecode() gopacket.LayerClass    { return layers.LayerTypeTCP }
func (h *tcpHeader) NextLayerType() gopacket.LayerType { return gopacket.LayerTypeZero }
func (h *tcpHeader) LayerPayload() []byte              { return nil }

func (h *tcpHeader) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if len(data) < 20 {
		df.SetTruncated()
		return errTCPShort
	}
	off := int(data[12]>>4) * 4
	if off < 20 {
		return errTCPOffset
	}
	if off > len(data) {
		df.SetTruncated()
		return errTCPShort
	}
	h.Contents = data[:off]
	return nil
}

// firstLayer maps a link type to the index in firstLayers of the layer its
// frames start with; false for link types kadiag cannot read.
func firstLayer(lt layers.LinkType, data []byte) (int, bool) {
	switch lt {
	case layers.LinkTypeEthernet:
		return 0, true
	case layers.LinkTypeLinuxSLL:
		return 1, true
	case layers.LinkTypeLinuxSLL2:
		return 2, true
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		return 3, true
	case linkTypeIPv4:
		return 4, true
	case linkTypeIPv6:
		return 5, true
	case layers.LinkTypeRaw, linkTypeRawOpenBSD, linkTypeRawBSDOS:
		// Raw IP: the version nibble says which.
		if len(data) > 0 && data[0]>>4 == 6 {
			return 5, true
		}
		return 4, true
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

// decode fills seg from one frame.
func (d *decoder) decode(lt layers.LinkType, data []byte, seg *segment) decodeResult {
	if lt == layers.LinkTypeEthernet {
		if r, ok := d.decodeEthernet(data, seg); ok {
			return r
		}
	}
	first, ok := firstLayer(lt, data)
	if !ok {
		return badLinkType
	}
	err := d.parsers[first].DecodeLayers(data, &d.decoded)
	var haveIP, v6, haveTCP bool
	for _, t := range d.decoded {
		switch t {
		case layers.LayerTypeIPv4:
			haveIP, v6 = true, false
		case layers.LayerTypeIPv6:
			haveIP, v6 = true, true
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
	d.fill(data, v6, seg)
	return isTCP
}

// decodeEthernet is decode's path for the commonest frames, Ethernet with
// IPv4 or IPv6 and TCP: the same gopacket layers, called one after the
// other instead of through the parser's dispatch. ok is false for anything
// else (VLAN tags, IPv6 extension headers), which the parser then decodes
// from the start.
func (d *decoder) decodeEthernet(data []byte, seg *segment) (r decodeResult, ok bool) {
	nf := gopacket.NilDecodeFeedback
	if d.eth.DecodeFromBytes(data, nf) != nil {
		return notTCP, true
	}
	var tcp []byte
	v6 := false
	switch d.eth.EthernetType {
	case layers.EthernetTypeIPv4:
		// TCP exactly when IPv4.NextLayerType says so (not a fragment),
		// without its table lookups.
		ip := &d.ip4
		if ip.DecodeFromBytes(d.eth.Payload, nf) != nil || ip.Protocol != layers.IPProtocolTCP ||
			ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 {
			return notTCP, true // as the parser ends: no TCP, nothing cut
		}
		tcp = d.ip4.Payload
	case layers.EthernetTypeIPv6:
		// Extension headers (a hop-by-hop one too) are the parser's.
		if d.ip6.DecodeFromBytes(d.eth.Payload, nf) != nil || d.ip6.HopByHop != nil || d.ip6.NextHeader != layers.IPProtocolTCP {
			return 0, false
		}
		tcp, v6 = d.ip6.Payload, true
	default:
		return 0, false
	}
	if d.tcp.DecodeFromBytes(tcp, nf) != nil {
		return truncatedTCP, true
	}
	d.fill(data, v6, seg)
	return isTCP, true
}

// fill copies the decoded IP and TCP headers of frame data into seg.
func (d *decoder) fill(data []byte, v6 bool, seg *segment) {
	var ipStart, ipLen int
	if v6 {
		ipStart = cap(data) - cap(d.ip6.Contents)
		ipLen = 40 + int(d.ip6.Length)
		if d.ip6.Length == 0 { // jumbogram or TSO: trust what was captured
			ipLen = len(data) - ipStart
		}
		// gopacket's addresses are the header's own 16 bytes.
		copy(seg.src.addr[:], d.ip6.SrcIP)
		copy(seg.dst.addr[:], d.ip6.DstIP)
	} else {
		ipStart = cap(data) - cap(d.ip4.Contents)
		ipLen = int(d.ip4.Length)
		seg.src.addr, seg.dst.addr = v4InV6, v4InV6
		copy(seg.src.addr[12:], d.ip4.SrcIP)
		copy(seg.dst.addr[12:], d.ip4.DstIP)
	}
	tcp := d.tcp.Contents[:cap(d.tcp.Contents)]
	tcpStart := cap(data) - cap(tcp)
	hdr := int(tcp[12]>>4) * 4
	seglen := max(ipStart+ipLen-tcpStart-hdr, 0)
	seg.src.port = binary.BigEndian.Uint16(tcp[0:2])
	seg.dst.port = binary.BigEndian.Uint16(tcp[2:4])
	seg.seq = binary.BigEndian.Uint32(tcp[4:8])
	seg.ack = binary.BigEndian.Uint32(tcp[8:12])
	seg.flags = tcp[13]
	seg.window = uint32(binary.BigEndian.Uint16(tcp[14:16]))
	seg.seglen = uint32(seglen)
	seg.iplen = uint32(ipLen)
}

// v4InV6 is ::ffff:0.0.0.0, the prefix of IPv4 addresses in an endpoint.
var v4InV6 = [16]byte{10: 0xff, 11: 0xff}

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
